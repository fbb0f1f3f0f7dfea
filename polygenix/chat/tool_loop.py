"""What a chat turn needs to know of tool loops (a /v1 client's tools, the model's calls, the
results the client sends back), kept apart from the turn's steps (turn.py).

A tool loop's next request ends with `tool` messages instead of a question of the user's: those
results are what the turn asks. The last is stored as the turn's question (its `tool_call_id`
set), the others just before it; the reply that calls tools keeps its calls (`tool_calls`).
"""

from dataclasses import replace
from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, select

from ..extensions import db
from ..models import ChatSession, Message
from ..providers.base import StreamEvent
from ..providers.messages import ChatMessage, ToolCall, images_of, new_call_id, plain, text_of
from . import transcript
from .images import IMAGE_CHARS


def results(messages: list[ChatMessage]) -> list[ChatMessage]:
    """The tool results that end `messages` (none when a question of the user's ends them)."""
    n = len(messages)
    while n and messages[n - 1]["role"] == "tool":
        n -= 1
    return messages[n:]


def asked(content: str, given: list[ChatMessage]) -> list[ChatMessage]:
    """What a turn asks, as messages: the tool results `given`, else the user's `content`."""
    return given or [{"role": "user", "content": content}]


def whole_turn(question: list[ChatMessage], text: str, calls: list | None) -> list[tuple[str, str]]:
    """What a complete turn (`question`, then the reply's text and calls) adds to its
    session's transcript."""
    reply: ChatMessage = {"role": "assistant", "content": text}
    if calls:
        reply["tool_calls"] = calls
    return transcript.entries([*question, reply])


def chars(messages: list[ChatMessage]) -> int:
    """The size of `messages` for an estimate, in characters: their text, the arguments of
    their tool calls, and IMAGE_CHARS an image."""
    if plain(messages):
        return sum(len(m["content"]) for m in messages)
    return sum(
        len(text_of(m["content"]))
        + IMAGE_CHARS * len(images_of(m["content"]))
        + arguments_chars(m.get("tool_calls"))
        for m in messages
    )


def arguments_chars(calls: list | None) -> int:
    return sum(len(call["arguments"]) for call in calls or ())


def first_text(messages: list[ChatMessage], fallback: str) -> str:
    """The words a new session's title is made of: its first message with text."""
    said = (text_of(m["content"]) for m in messages)
    return next((text for text in said if text.strip()), fallback)


def result_row(session: ChatSession, result: ChatMessage, at: datetime) -> Message:
    """A tool result stored before the turn's question (the last result)."""
    return Message(
        session=session,
        is_bot=False,
        content=text_of(result["content"]),
        created_at=at,
        tool_call_id=result["tool_call_id"],
    )


# A session's calls with what their provider needs back (Gemini's thoughtSignature), latest
# first: a client re-sends a call without it.
_STORED_CALLS = (
    select(Message.tool_calls)
    .where(
        Message.session_id == bindparam("session_id"),
        Message.tool_calls.is_not(None),
        Message.superseded.is_(False),
    )
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)


def with_provider_data(session_id: int, messages: list[ChatMessage]) -> list[ChatMessage]:
    """`messages` with each call the session stored given back its provider_data (a client
    sends a call only as OpenAI shapes it), from its latest CONTEXT_MAX_MESSAGES calling
    replies."""
    limit = current_app.config["CONTEXT_MAX_MESSAGES"]
    stored = {
        call["id"]: call["provider_data"]
        for calls in db.session.scalars(_STORED_CALLS, {"session_id": session_id, "limit": limit})
        for call in calls
        if call.get("provider_data")
    }
    if not stored:
        return messages
    given = []
    for m in messages:
        if any(c["id"] in stored for c in m.get("tool_calls") or ()):
            calls = [
                c | {"provider_data": stored[c["id"]]} if c["id"] in stored else c
                for c in m["tool_calls"]
            ]
            m = {**m, "tool_calls": calls}
        given.append(m)
    return given


def call_ids(messages: list[ChatMessage]) -> set[str]:
    """The ids of the calls in `messages`: a reply's calls must not take one of them."""
    return {call["id"] for m in messages for call in m.get("tool_calls") or ()}


def fresh_calls(calls: tuple[ToolCall, ...], taken: set[str]) -> tuple[ToolCall, ...]:
    """`calls` with each id already `taken` in the conversation replaced by a new one (a
    provider that numbers its calls from call_0 in every reply), so that ids stay unique in the
    conversation, as clients and providers expect."""
    if not taken or not any(call["id"] in taken for call in calls):
        return calls
    return tuple(
        {**call, "id": _fresh(call["id"], taken)} if call["id"] in taken else call for call in calls
    )


def fresh_event(event: StreamEvent, taken: set[str]) -> StreamEvent:
    """A streamed event whose calls begin with ids already `taken`, given new ones (each call's
    id comes once, with its first delta)."""
    if not taken or not any(d.id in taken for d in event.tool_calls):
        return event
    deltas = tuple(
        replace(d, id=_fresh(d.id, taken)) if d.id in taken else d for d in event.tool_calls
    )
    return replace(event, tool_calls=deltas)


def _fresh(old: str, taken: set[str]) -> str:
    new = new_call_id()  # random: unique whatever `old` was
    taken.add(new)
    return new
