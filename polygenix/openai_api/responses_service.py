"""A Responses API turn: its context (the `instructions`, the chain of responses it continues,
the new input), the chat turn it is (chat/turn.py), and its response object, recorded with the
turn in the very transaction that stores it (Turn.on_store; a plain turn's on PostgreSQL: a
part of its one statement, Turn.new_row), never without it.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app
from werkzeug.exceptions import HTTPException

from .. import database
from ..chat import images as chat_images
from ..chat import turn as turns
from ..chat.stream_store import KeptRow
from ..chat.tool_loop import chars
from ..chat.turn_state import NewRow
from ..extensions import db
from ..models import StoredResponse, User
from ..providers import ChatMessage, Completion, UnsupportedInput
from ..providers.messages import has_images
from . import responses_events as objects
from . import responses_retries as retries
from . import responses_store as stored
from .headers import SESSION_HEADER
from .responses_images import without_bytes
from .responses_schema import Request
from .schemas import invalid

log = logging.getLogger(__name__)
# The request field an UnsupportedInput is about, by the chat field it names.
FIELDS = {"response_format": "text", "tools": "tools", "tool_choice": "tool_choice"}


class PreviousNotFound(LookupError):
    """`previous_response_id` is none of the caller's stored responses."""


class Repeated(Exception):
    """The call is a retry of one already answered (`row` its response) or still under way."""

    def __init__(self, found: retries.Found, row: StoredResponse | None):
        super().__init__(found.value)
        self.found, self.row = found, row


@dataclass
class Pending:
    """A response under way: its turn, the response object's fields known before the provider
    answers, and (once answered or streamed) how its finished object is made from the reply."""

    turn: turns.Turn
    base: dict
    asked: Request
    previous_id: int | None
    finished: Callable[[Any], dict] | None = None
    claimed: bool = False  # its row holds the call's retry key, from before the provider call
    serialised: str | None = None  # the finished object as JSON, when it was answered so

    def record(self, session_id: int, reply_id: int, reply) -> None:
        """Turn.on_store: the response kept, in the transaction that stores its turn."""
        self.kept(self.finished(reply)).add(session_id, reply_id)

    def row(self, reply) -> NewRow:
        """The record as a part of the statement that writes a streamed reply (KeptRow)."""
        return self.kept(self.finished(reply)).new_row()

    def kept(self, body: dict) -> stored.Record:
        """The response's record, `body` its object (as the JSON it was answered with, if so)."""
        serialised = self.serialised if self.serialised is not None else json.dumps(body)
        items = without_bytes(self.asked.items)
        return stored.Record(
            self.turn.user_id, body["id"], items, serialised, self.previous_id, self.claimed
        )

    def failed(self, status: int, message: str) -> dict:
        """The failed response object of a call that got no reply, kept (see keep_failure)."""
        error = objects.failure(status, message)
        body = self.base | {"status": "failed", "output": [], "error": error}
        self.keep_failure(body)
        return body

    def keep_failure(self, body: dict) -> None:
        """A failed response kept with the user's question when that was stored, and what a
        stream cut short kept of the reply; else the call's claim lets go of its key. Never
        raises: the client is told of the failure whatever the database does."""
        turn = self.turn
        try:
            if not turn.persist:
                return
            if turn.question is None or turn.session is None:  # none of the turn was stored
                self.release()
                return
            reply = turn.reply.id if turn.reply is not None else None
            items = without_bytes(self.asked.items)
            ids = (turn.session.id, turn.question.id, reply)
            stored.add_failed(turn.user_id, *ids, items, body, self.previous_id, self.claimed)
            self.claimed = False
        except Exception as e:
            log.warning("keeping a failed response failed: %s", type(e).__name__)
            with contextlib.suppress(Exception):
                db.session.rollback()

    def release(self) -> None:
        """The call ends with nothing kept: its claim (if any, and unrecorded) goes."""
        if self.claimed:
            self.claimed = False
            retries.release(self.base["id"])


def _messages(asked: Request, earlier: list[ChatMessage]) -> list[ChatMessage]:
    system: list[ChatMessage] = []
    if asked.instructions:
        system = [{"role": "system", "content": asked.instructions}]
    return system + earlier + asked.messages


def _turn(
    user: User, asked: Request, earlier: list[ChatMessage], where: tuple, retry: dict
) -> turns.Turn:
    number, session = where
    return turns.prepare_conversation(
        user,
        _messages(asked, earlier),
        asked.model,
        asked.options,
        number=number,
        session=session,
        persist=asked.store,
        streamed=asked.stream,
        tooling=asked.tooling,
        inline=list(asked.images),
        **retry,
    )


def _refused_images(error: HTTPException) -> str | None:
    """The message of chat's 400 on `messages` (images the provider cannot take), else None."""
    found = getattr(error, "data", None) or {}
    if error.code != 400 or set(found.get("errors", {}).get("json", {})) != {"messages"}:
        return None
    return found.get("message")


def _where(user: User, asked: Request, number: int | None):
    """The session the response goes in (its number, and the session when already read), the
    response it continues and that chain's messages. PreviousNotFound; a 400 when the session
    header names another session than the continued response's."""
    if asked.previous_id is None:
        return (number, None), None, []
    new = chars(asked.messages) + len(asked.instructions or "")
    found = stored.chain(user.id, asked.previous_id, new)
    if found is None:
        raise PreviousNotFound(asked.previous_id)
    if asked.store and number is not None and number != found.session.number:
        invalid(
            SESSION_HEADER,
            f"The response previous_response_id names is in session {found.session.number},"
            f" not {number}: a continuation is stored in its chain's session.",
        )
    return (found.session.number, found.session), found.previous_id, found.messages


def _claim(user: User, asked: Request, key: str | None, retrying: bool) -> bool:
    """Whether the call claimed its retry key (committed: `_let_go` lets go of it); Repeated
    when an earlier attempt answers it or holds the key."""
    if key is None or not asked.store:
        return False
    found, row = retries.claim(user.id, key, retrying, asked.ids.response)
    if found in (retries.Found.ANSWERED, retries.Found.BUSY):
        raise Repeated(found, row)
    return found is retries.Found.NEW


def _let_go(claimed: bool, public_id: str) -> None:
    """A call refused before its provider call: what its preparation began is rolled back,
    and its claim, committed, lets go of the key (a retry is answered anew)."""
    if claimed:
        retries.release(public_id)  # rolls back first
    else:
        db.session.rollback()


def prepare(
    user: User,
    asked: Request,
    number: int | None = None,
    key: str | None = None,
    retrying: bool = False,
) -> Pending:
    """The response's turn, its reads ended: in session `number` (the caller's,
    made if none) unless it continues a response; `key`, the call's retry key. PreviousNotFound;
    Repeated; UnknownModelError; a 400 for what the provider cannot take.

    The chain's reads are sent as chat/prepare.py sends a turn's, and so is the claim of a
    retry key (responses_retries.py): on PostgreSQL each its own transaction. A claim is let go
    of if the call is refused before the provider is called."""
    database.alone(db.session())
    where, previous, earlier = _where(user, asked, number)
    claimed = _claim(user, asked, key, retrying)
    public_id = asked.ids.response
    retry = {"retry_key": key, "retrying": retrying} if asked.store else {}
    try:
        try:
            turn = _turn(user, asked, earlier, where, retry)
        except HTTPException as e:
            if _refused_images(e) is None or not has_images(earlier):
                raise
            # A provider that takes no image (or not these) is sent the chain's text alone,
            # as the native API sends a session's; the new input's images stay refused.
            turn = _turn(user, asked, chat_images.without_images(earlier), where, retry)
    except UnsupportedInput as e:  # what the model's provider cannot take
        _let_go(claimed, public_id)
        invalid(FIELDS.get(e.field, "input"), e.message)
    except HTTPException as e:
        _let_go(claimed, public_id)
        refusal = _refused_images(e)
        if refusal is None:
            raise
        invalid("input", refusal)
    except BaseException:
        _let_go(claimed, public_id)
        raise
    base = objects.response(public_id, int(time.time()), turn.model_name, asked.echo)
    pending = Pending(turn, base, asked, previous, claimed=claimed)
    if turn.persist:
        turn.on_store = pending.record
    return pending


def answered(pending: Pending, completion: Completion) -> Response:
    """A whole reply's response object as the answer to the call, its turn stored (with the
    object, serialised once for both, when it is to be kept)."""
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
    answer = current_app.json.response(body)
    pending.finished = lambda reply: body
    if pending.turn.persist:  # its record keeps the very JSON answered; store:false, none
        pending.serialised = answer.get_data(as_text=True).rstrip("\n")
        # A plain turn's store writes it with the turn's rows (chat/first_turn.py, next_turn.py):
        # a new row, or the row that claimed the call's retry key.
        pending.turn.new_row = pending.kept(body).new_row()
    turns.store(pending.turn, completion)
    return answer


def streamed(pending: Pending) -> objects.ResponseEvents:
    """A streamed response's events; its finished object is kept with its turn (on PostgreSQL
    by the statement that writes the reply, chat/stream_store.py)."""
    events = objects.ResponseEvents(pending.base, pending.asked.ids, pending.keep_failure)
    pending.finished = events.final
    if pending.turn.persist:  # its record, a part of the statement that writes the reply
        pending.turn.on_store = KeptRow(pending.record, pending.row)
    return events
