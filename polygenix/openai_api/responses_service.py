"""A Responses API turn: its context (the `instructions`, the chain of responses it continues,
the new input), the chat turn it is (chat/turn.py), and its response object, recorded with the
turn in the very transaction that stores it (Turn.on_store), never without it.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException

from ..chat import images as chat_images
from ..chat import turn as turns
from ..chat.tool_loop import chars
from ..models import User
from ..providers import ChatMessage, Completion, UnsupportedInput
from ..providers.messages import has_images
from . import responses_events as objects
from . import responses_store as stored
from .responses_images import without_bytes
from .responses_schema import Request
from .schemas import invalid

# The request field an UnsupportedInput is about, by the chat field it names.
FIELDS = {"response_format": "text", "tools": "tools", "tool_choice": "tool_choice"}


class PreviousNotFound(LookupError):
    """`previous_response_id` is none of the caller's stored responses."""


@dataclass
class Pending:
    """A response under way: its turn, the response object's fields known before the provider
    answers, and (once answered or streamed) how its finished object is made from the reply."""

    turn: turns.Turn
    base: dict
    asked: Request
    previous_id: int | None
    finished: Callable[[Any], dict] | None = None

    def record(self, session_id: int, reply_id: int, reply) -> None:
        """Turn.on_store: the response kept, in the transaction that stores its turn."""
        body = self.finished(reply)
        items = without_bytes(self.asked.items)
        stored.add(self.turn.user_id, session_id, reply_id, items, body, self.previous_id)


def _messages(asked: Request, earlier: list[ChatMessage]) -> list[ChatMessage]:
    system: list[ChatMessage] = []
    if asked.instructions:
        system = [{"role": "system", "content": asked.instructions}]
    return system + earlier + asked.messages


def _turn(user: User, asked: Request, earlier: list[ChatMessage], number: int | None):
    return turns.prepare_conversation(
        user,
        _messages(asked, earlier),
        asked.model,
        asked.options,
        number=number,
        persist=asked.store,
        streamed=asked.stream,
        tooling=asked.tooling,
        inline=list(asked.images),
    )


def _refused_images(error: HTTPException) -> str | None:
    """The message of chat's 400 on `messages` (images the provider cannot take), else None."""
    found = getattr(error, "data", None) or {}
    if error.code != 400 or set(found.get("errors", {}).get("json", {})) != {"messages"}:
        return None
    return found.get("message")


def prepare(user: User, asked: Request) -> Pending:
    """The response's turn, its read transaction ended. PreviousNotFound; UnknownModelError;
    a 400 for what the provider cannot take."""
    previous, number, earlier = None, None, []
    if asked.previous_id is not None:
        previous, number = stored.continued(user.id, asked.previous_id)
        if previous is None:
            raise PreviousNotFound(asked.previous_id)
        new = chars(asked.messages) + len(asked.instructions or "")
        earlier = stored.context(previous, new)
    try:
        try:
            turn = _turn(user, asked, earlier, number)
        except HTTPException as e:
            if _refused_images(e) is None or not has_images(earlier):
                raise
            # A provider that takes no image (or not these) is sent the chain's text alone,
            # as the native API sends a session's; the new input's images stay refused.
            turn = _turn(user, asked, chat_images.without_images(earlier), number)
    except UnsupportedInput as e:  # what the model's provider cannot take
        invalid(FIELDS.get(e.field, "input"), e.message)
    except HTTPException as e:
        refusal = _refused_images(e)
        if refusal is None:
            raise
        invalid("input", refusal)
    base = objects.response(asked.ids.response, int(time.time()), turn.model_name, asked.echo)
    pending = Pending(turn, base, asked, previous.id if previous is not None else None)
    if turn.persist:
        turn.on_store = pending.record
    return pending


def answered(pending: Pending, completion: Completion) -> dict:
    """A whole reply's response object, its turn stored (with it, when it is to be kept)."""
    status, details = objects.outcome(completion.finish_reason)
    used = objects.usage(
        completion.prompt_tokens,
        completion.completion_tokens,
        completion.cached_tokens,
        completion.reasoning_tokens,
    )
    said = (completion.content, completion.reasoning, status, completion.tool_calls)
    output = objects.output(pending.asked.ids, *said)
    body = pending.base | {"status": status, "output": output, "usage": used}
    body["incomplete_details"] = details
    if status == "completed":
        body["completed_at"] = int(time.time())
    pending.finished = lambda reply: body
    turns.store(pending.turn, completion)
    return body


def streamed(pending: Pending) -> objects.ResponseEvents:
    """A streamed response's events; its finished object is kept with its turn."""
    events = objects.ResponseEvents(pending.base, pending.asked.ids)
    pending.finished = events.final
    return events
