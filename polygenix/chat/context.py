"""What the provider is sent for a question in a session: the system prompt, the session's
latest complete turns that fit the budget, and the new message with its images."""

from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select

from ..attachments import store as attachments
from ..extensions import db
from ..models import MAX_ID, ChatSession, Message
from ..providers import ChatMessage
from . import images

_LATEST_MESSAGES = (
    select(Message)
    .where(
        Message.session_id == bindparam("session_id"),
        Message.id < bindparam("before"),
        Message.superseded.is_(False),
        # A tool loop's calls and results are the /v1 client's context, which it re-sends.
        Message.tool_calls.is_(None),
        Message.tool_call_id.is_(None),
    )
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)


def load_context(
    session_id: int, config: Mapping[str, Any], reserved: int, before: int = MAX_ID
) -> list[ChatMessage]:
    """The session's latest complete turns before message `before` that fit the budget,
    oldest first; superseded messages are never context.

    One bounded query. Each reply names its question (`reply_to_id`), so turns pair up right
    even when requests to one session overlap. A question without a complete reply (its provider
    call failed, was cut short, or is still being streamed) is left out, so roles alternate
    user/assistant as every provider requires.
    """
    rows = db.session.scalars(
        _LATEST_MESSAGES,
        {"session_id": session_id, "before": before, "limit": config["CONTEXT_MAX_MESSAGES"]},
    ).all()
    replies = {
        m.reply_to_id: m
        for m in rows
        if m.is_bot and not m.incomplete and m.error is None and m.lease_until is None
    }
    budget = config["CONTEXT_MAX_CHARS"] - reserved
    turns: list[ChatMessage] = []
    asked: dict[int, ChatMessage] = {}
    for question in rows:  # newest first
        reply = None if question.is_bot else replies.get(question.id)
        if reply is None:
            continue
        cost = len(question.content) + len(reply.content)
        if cost > budget:
            break
        budget -= cost
        asked[question.id] = {"role": "user", "content": question.content}
        turns += [{"role": "assistant", "content": reply.content}, asked[question.id]]
    turns.reverse()
    images.resend(asked, config)
    return turns


def build_messages(
    context: list[ChatMessage], content: str, session: ChatSession | None = None, pictures=()
) -> list[ChatMessage]:
    """What the provider is sent: the system prompt (the session's own, else SYSTEM_PROMPT),
    the earlier turns, the new message (with its images, `pictures`)."""
    prompt = current_app.config["SYSTEM_PROMPT"]
    if session is not None and session.system_prompt is not None:
        prompt = session.system_prompt
    system: list[ChatMessage] = [{"role": "system", "content": prompt}] if prompt else []
    return system + context + [{"role": "user", "content": attachments.parts(content, pictures)}]
