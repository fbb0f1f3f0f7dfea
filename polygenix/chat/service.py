"""A chat turn (session, context, provider call, persistence) and history queries."""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_smorest import abort
from sqlalchemy import BigInteger, bindparam, cast, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, joinedload
from sqlalchemy.orm.exc import StaleDataError

from ..api import page_of
from ..extensions import db
from ..logs import note
from ..metrics import record_provider_call
from ..models import ChatSession, Message, User
from ..providers import ChatMessage, Provider, ProviderError, UnknownModelError, resolve
from .schemas import MAX_NUMBER

TITLE_MAX_CHARS = 60
# Each lost race means another request of the same user won one, so this many concurrent
# new-session requests from one user always succeed.
CREATE_ATTEMPTS = 20


class SessionDeleted(LookupError):
    """The session of a turn under way was deleted before its reply could be stored."""


def _commit_turn() -> None:
    """Commit what a turn stores once the provider has answered.

    The foreign keys check, in this transaction, that the question it answers still exists:
    a reply or flag for a question deleted meanwhile (with its session) is not stored. Ids are
    never reused, so a vanished question's id cannot stand for someone else's.
    """
    try:
        db.session.commit()
    except (IntegrityError, StaleDataError):
        db.session.rollback()
        raise SessionDeleted("Chat session not found") from None


def make_title(text: str) -> str:
    """A title from a first message: one line, at most 60 characters, cut between words."""
    text = " ".join(text.split())
    if len(text) <= TITLE_MAX_CHARS:
        return text
    cut = text[: TITLE_MAX_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:-") + "…"


# The statements every chat turn runs are built once: building one costs more than running it.
_SESSION = select(ChatSession).where(
    ChatSession.user_id == bindparam("user_id"), ChatSession.number == bindparam("number")
)
_HIGHEST_NUMBER = select(func.max(ChatSession.number)).where(
    ChatSession.user_id == bindparam("user_id")
)
_LATEST_MESSAGES = (
    select(Message)
    .where(Message.session_id == bindparam("session_id"))
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)


def find_session(user_id: int, number: int) -> ChatSession | None:
    return db.session.scalar(_SESSION, {"user_id": user_id, "number": number})


def own_session_or_404(user: User, number: int) -> ChatSession:
    session = find_session(user.id, number)
    if session is None:
        abort(404, message="Chat session not found")
    return session


def next_number(user_id: int) -> int:
    """The caller's next free session number: one past their highest, else the lowest gap."""
    highest = db.session.scalar(_HIGHEST_NUMBER, {"user_id": user_id})
    if highest is None:
        return 1
    if highest < MAX_NUMBER:
        return highest + 1
    if find_session(user_id, 1) is None:
        return 1
    following = aliased(ChatSession)
    # In 64 bits: the number after 2,147,483,647 overflows PostgreSQL's integer.
    after = cast(ChatSession.number, BigInteger) + 1
    return db.session.scalar(
        select(func.min(after)).where(
            ChatSession.user_id == user_id,
            ~exists().where(following.user_id == user_id, following.number == after),
        )
    )


def store_question(
    user: User, number: int | None, content: str, session: ChatSession | None
) -> tuple[ChatSession, Message]:
    """Store the user's message in `session`, or with None in a new session `number` (the next
    free number if None): one transaction.

    The unique (user_id, number) index settles races: a request that loses one stores its message
    in the winner's session (or, with no number asked for, takes the next number).
    """
    for _ in range(CREATE_ATTEMPTS):
        existing = session is not None
        if session is None:
            session = ChatSession(
                user_id=user.id,
                number=number if number is not None else next_number(user.id),
                title=make_title(content),
            )
        question = Message(session=session, is_bot=False, content=content)
        db.session.add(question)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if existing:  # the session was deleted since it was looked up
                raise SessionDeleted("Chat session not found") from None
            session = find_session(user.id, number) if number is not None else None
            continue
        return session, question
    abort(
        503,
        message="Too many concurrent new sessions; try again.",
        headers={"Retry-After": "1"},
    )


def load_context(session_id: int, config: Mapping[str, Any], reserved: int) -> list[ChatMessage]:
    """The session's latest complete turns that fit the budget, oldest first.

    One bounded query. Each reply names its question (`reply_to_id`), so turns pair up right
    even when requests to one session overlap. A question without a complete reply (its provider
    call failed, was cut short, or is still running) is left out, so roles alternate
    user/assistant as every provider requires.
    """
    rows = db.session.scalars(
        _LATEST_MESSAGES, {"session_id": session_id, "limit": config["CONTEXT_MAX_MESSAGES"]}
    ).all()
    # A reply cut short takes its question out of the context with it.
    replies = {m.reply_to_id: m for m in rows if m.is_bot and not m.incomplete}
    budget = config["CONTEXT_MAX_CHARS"] - reserved
    turns: list[ChatMessage] = []
    for question in rows:  # newest first
        reply = None if question.is_bot else replies.get(question.id)
        if reply is None:
            continue
        cost = len(question.content) + len(reply.content)
        if cost > budget:
            break
        budget -= cost
        turns += [
            {"role": "assistant", "content": reply.content},
            {"role": "user", "content": question.content},
        ]
    turns.reverse()
    return turns


@dataclass
class Turn:
    """A chat turn under way: the user's message is stored, the model's reply is not yet."""

    provider: Provider
    model: str
    session: ChatSession
    question: Message
    messages: list[ChatMessage]
    started: float  # time.monotonic() when the provider call began


def begin_turn(
    user: User,
    content: str,
    model_name: str,
    number: int | None,
    start: Callable[[Provider, str, list[ChatMessage]], None] | None = None,
) -> Turn:
    """Check the model, find or start the session, and store the user's message.

    `start(provider, model, messages)`, if given, is called once the provider's request is known
    and before the message is committed (a stream is opened first: see streaming.stream_reply);
    the provider's latency then counts from that call. Every failure here is an ordinary error
    response (422, 503...), streaming or not.
    """
    config = current_app.config
    try:
        provider, model = resolve(model_name, config)
    except UnknownModelError as e:
        abort(422, message=str(e), errors={"json": {"model": [str(e)]}})
    missing = provider.missing_setting(config, model)
    if missing:
        abort(503, message=f"Model provider {provider.NAME!r} is not configured: set {missing}")

    session = find_session(user.id, number) if number is not None else None
    context = [] if session is None else load_context(session.id, config, len(content))
    messages = build_messages(config, context, content)
    started = None
    if start is not None:
        # The provider may take seconds to start answering: end the lookups' transaction, so
        # that no database connection is held meanwhile.
        db.session.commit()
        started = time.monotonic()
        start(provider, model, messages)
    # Committed before the provider's reply is read: the user's words survive a provider
    # failure, and no database lock is held while the model thinks.
    session, question = store_question(user, number, content, session)
    # Without `start`, the caller calls the provider from now on.
    return Turn(provider, model, session, question, messages, started or time.monotonic())


def _account(turn: Turn, outcome: str, prompt_tokens=None, completion_tokens=None) -> None:
    """The provider call in the metrics and in the request's log line."""
    seconds = time.monotonic() - turn.started
    record_provider_call(
        turn.provider, turn.model, outcome, seconds, prompt_tokens, completion_tokens
    )
    note(
        provider=turn.provider.NAME,
        model=turn.model,
        outcome=outcome,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        provider_latency_ms=round(seconds * 1000, 1),
    )


def fail_turn(turn: Turn, error: ProviderError) -> None:
    """The model gave nothing: the user's message stays, flagged with the error."""
    _account(turn, str(error.status))
    turn.question.error = error.message
    # A stream ends after the request's own database session: attach the message to this one.
    db.session.add(turn.question)
    _commit_turn()


def finish_turn(
    turn: Turn,
    content: str,
    *,
    model: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    finish_reason: str | None,
    error: str | None = None,
) -> Message:
    """Store the model's reply; with `error`, it is the part received before it was cut short."""
    _account(turn, "incomplete" if error else "ok", prompt_tokens, completion_tokens)
    reply = Message(
        session=turn.session,
        reply_to_id=turn.question.id,
        is_bot=True,
        content=content,
        model=f"{turn.provider.NAME}/{model or turn.model}",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
        latency_ms=round((time.monotonic() - turn.started) * 1000),
        incomplete=error is not None,
        error=error,
    )
    db.session.add(reply)
    _commit_turn()
    return reply


def send_message(user: User, content: str, model_name: str, number: int | None) -> Message:
    """Store the user's message, ask the model with the session's context, store the reply.

    If the provider fails, the user's message stays, marked with the error, and the error is
    raised for the API to answer with.
    """
    turn = begin_turn(user, content, model_name, number)
    try:
        completion = turn.provider.complete(turn.messages, turn.model, current_app.config)
    except ProviderError as e:
        fail_turn(turn, e)
        raise
    return finish_turn(
        turn,
        completion.content,
        model=completion.model,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        finish_reason=completion.finish_reason,
    )


def build_messages(
    config: Mapping[str, Any], context: list[ChatMessage], content: str
) -> list[ChatMessage]:
    """What the provider is sent: the system prompt, the earlier turns, the new message."""
    system: list[ChatMessage] = (
        [{"role": "system", "content": config["SYSTEM_PROMPT"]}] if config["SYSTEM_PROMPT"] else []
    )
    return system + context + [{"role": "user", "content": content}]


def _sessions_page(user: User, page: int, page_size: int, *columns) -> tuple[int, list]:
    """The total of the caller's sessions, and one page of them (newest first) with `columns`."""
    total = db.session.scalar(
        select(func.count(ChatSession.id)).where(ChatSession.user_id == user.id)
    )
    rows = db.session.execute(
        page_of(
            select(ChatSession, *columns)
            .where(ChatSession.user_id == user.id)
            .order_by(ChatSession.created_at.desc(), ChatSession.id.desc()),
            page,
            page_size,
        )
    ).all()
    return total, rows


def _as_dict(session: ChatSession, **extra) -> dict:
    return {
        "number": session.number,
        "title": session.title,
        "created_at": session.created_at,
    } | extra


def history(user: User, page: int, page_size: int) -> tuple[int, list[dict]]:
    """One page of the caller's sessions, newest first, each with its messages oldest first.

    Two queries for the page whatever its size: the sessions, then all their messages.
    """
    total, rows = _sessions_page(user, page, page_size)
    by_session: dict[int, list[Message]] = {s.id: [] for (s,) in rows}
    if by_session:
        for message in db.session.scalars(
            _with_session(select(Message))
            .where(Message.session_id.in_(by_session))
            .order_by(Message.session_id, Message.id)
        ):
            by_session[message.session_id].append(message)
    return total, [_as_dict(s, messages=by_session[s.id]) for (s,) in rows]


def summaries(user: User, page: int, page_size: int) -> tuple[int, list[dict]]:
    """One page of the caller's sessions, newest first, with message counts and no messages."""
    count = (
        select(func.count(Message.id))
        .where(Message.session_id == ChatSession.id)
        .correlate(ChatSession)
        .scalar_subquery()
    )
    total, rows = _sessions_page(user, page, page_size, count)
    return total, [_as_dict(s, message_count=n) for s, n in rows]


def summary(session: ChatSession) -> dict:
    count = db.session.scalar(
        select(func.count(Message.id)).where(Message.session_id == session.id)
    )
    return _as_dict(session, message_count=count)


def session_with_messages(session: ChatSession) -> dict:
    messages = db.session.scalars(
        _with_session(select(Message)).where(Message.session_id == session.id).order_by(Message.id)
    ).all()
    return _as_dict(session, messages=messages)


def _with_session(statement):
    """Messages are shown with their session's number: load it in the same query."""
    return statement.options(joinedload(Message.session))
