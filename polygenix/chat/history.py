"""Reading a user's sessions: finding one, listing them, their messages, and the ETag that lets
a poll of an unchanged history cost one small query; and a new session's number."""

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, cast, exists, func, select, update
from sqlalchemy.orm import aliased, joinedload

from ..api import page_of
from ..attachments.store import listed
from ..auth.access import missing
from ..extensions import db
from ..models import MAX_ID, ChatSession, Message, User
from .session_rows import changed

# The statements every chat turn runs are built once: building one costs more than running it.
_SESSION = select(ChatSession).where(
    ChatSession.user_id == bindparam("user_id"), ChatSession.number == bindparam("number")
)
_HIGHEST_NUMBER = select(func.max(ChatSession.number)).where(
    ChatSession.user_id == bindparam("user_id")
)
# Two subqueries, not one scan: alone, the latest change is one lookup of its index.
_VERSION = select(
    select(func.count(ChatSession.id))
    .where(ChatSession.user_id == bindparam("user_id"))
    .scalar_subquery(),
    select(func.max(ChatSession.changed_at))
    .where(ChatSession.user_id == bindparam("user_id"))
    .scalar_subquery(),
)
# A reply still being streamed is shown once it is finished (or flagged by the sweep).
SHOWN = Message.lease_until.is_(None)
# The session's transcript as it stands: what was replaced by a regenerate or an edit is not.
CURRENT = and_(SHOWN, Message.superseded.is_(False))
# The user's questions and the text answers: not a tool loop's calls and results, which are
# shown only when asked for (include_tools), so that the original web client's transcript is
# the one it expects.
NO_TOOLS = and_(Message.tool_calls.is_(None), Message.tool_call_id.is_(None))
# Latest activity first, or newest first; ties by number, so pages never overlap.
ORDER_BY = {
    "updated": (ChatSession.updated_at.desc(), ChatSession.number.desc()),
    "created": (ChatSession.created_at.desc(), ChatSession.id.desc()),
}


def shown(include_superseded: bool, include_tools: bool = False):
    which = SHOWN if include_superseded else CURRENT
    return which if include_tools else and_(which, NO_TOOLS)


def find_session(user_id: int, number: int) -> ChatSession | None:
    return db.session.scalar(_SESSION, {"user_id": user_id, "number": number})


def own_session_or_404(user: User, number: int) -> ChatSession:
    session = find_session(user.id, number)
    if session is None:  # or the account went since the request's authentication (a 401)
        missing(user.id, "Chat session not found")
    return session


def next_number(user_id: int) -> int:
    """The user's next free session number by their sessions: one past their highest, else
    the lowest gap."""
    highest = db.session.scalar(_HIGHEST_NUMBER, {"user_id": user_id})
    if highest is None:
        return 1
    if highest < MAX_ID:
        return highest + 1
    if find_session(user_id, 1) is None:
        return 1
    following = aliased(ChatSession)
    # In 64 bits: the number after 2,147,483,647 overflows PostgreSQL's integer.
    after = cast(ChatSession.number, BigInteger) + 1
    gap = db.session.scalar(
        select(func.min(after)).where(
            ChatSession.user_id == user_id,
            ~exists().where(following.user_id == user_id, following.number == after),
        )
    )
    assert gap is not None  # the number after the highest is free: there is a least
    return gap


_users = User.__table__.c
COUNT_UP = (
    update(User.__table__)
    .where(_users.id == bindparam("user_id"), _users.last_session_number < MAX_ID)
    .values(last_session_number=_users.last_session_number + 1)
    .returning(_users.last_session_number)
)
_RAISE_TO = (
    update(User.__table__)
    .where(_users.id == bindparam("user_id"), _users.last_session_number < bindparam("asked"))
    .values(last_session_number=bindparam("asked"))
)
_HIGHEST = (
    select(func.max(ChatSession.number)).where(ChatSession.user_id == _users.id).scalar_subquery()
)
_CATCH_UP = (
    update(User.__table__)
    .where(_users.id == bindparam("user_id"), _users.last_session_number < _HIGHEST)
    .values(last_session_number=_HIGHEST)
)


def new_number(user_id: int, asked: int | None) -> tuple[int, bool]:
    """A new session's number, in the transaction that makes it: the one `asked` for (the
    user's counter raised to it), else the next of the counter, counted up: the user's row,
    locked until the commit, queues the user's new sessions, so they never take one number.
    Once the counter reached 2,147,483,647, the lowest free number. And whether the user's row
    is now locked: not by a counter already past the number asked for, nor at its top."""
    if asked is not None:
        return asked, changed(_RAISE_TO, {"user_id": user_id, "asked": asked}) == 1
    number = db.session.execute(COUNT_UP, {"user_id": user_id}).scalar()
    # None: the counter is at the top (or the account went: then the session's insert fails).
    return (number, True) if number is not None else (next_number(user_id), False)


def catch_up(user_id: int) -> None:
    """Raise the user's counter to their highest number (sessions made without it, such as a
    restored backup's); the caller commits."""
    db.session.execute(_CATCH_UP, {"user_id": user_id})


def etag(user: User, query: str) -> tuple[str, int]:
    """A tag that changes whenever anything a history or sessions listing shows changes (a
    session made, deleted, renamed, or given a message), and the number of the user's sessions
    (the listing's total). One query, through two indexes."""
    count, changed = db.session.execute(_VERSION, {"user_id": user.id}).one()
    moment = changed.isoformat() if isinstance(changed, datetime) else str(changed)
    digest = hashlib.sha256(f"{user.id}|{count}|{moment}|{query}".encode()).hexdigest()
    return digest[:32], count


def _sessions_page(
    user: User, page: int | None, page_size: int, order: str, *columns
) -> Sequence[Any]:
    """One page of the caller's sessions in `order` (ORDER_BY) with `columns`; every session
    when `page` is None."""
    statement = (
        select(ChatSession, *columns)
        .where(ChatSession.user_id == user.id)
        .order_by(*ORDER_BY[order])
    )
    if page is not None:
        statement = page_of(statement, page, page_size)
    return db.session.execute(statement).all()


def _as_dict(session: ChatSession, **extra) -> dict:
    return {
        "number": session.number,
        "title": session.title,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "system_prompt": session.system_prompt,
        "model": session.model,
    } | extra


def with_messages(
    sessions: Sequence[ChatSession], include_superseded: bool = False, include_tools: bool = False
) -> list[dict]:
    """`sessions`, each with its messages oldest first: one query whatever their number."""
    by_session: dict[int, list[Message]] = {s.id: [] for s in sessions}
    if by_session:
        for message in db.session.scalars(
            _with_session(select(Message))
            .where(Message.session_id.in_(by_session), shown(include_superseded, include_tools))
            .order_by(Message.session_id, Message.id)
        ):
            by_session[message.session_id].append(message)
    show_attachments([m for messages in by_session.values() for m in messages])
    return [_as_dict(s, messages=by_session[s.id]) for s in sessions]


def show_attachments(messages: list[Message]) -> None:
    """Each message's attachments, as shown, read for them all at once (the user's messages
    only: replies have none)."""
    shown = listed(m.id for m in messages if not m.is_bot)
    for message in messages:
        message.shown_attachments = shown.get(message.id, [])


def history(
    user: User,
    page: int | None,
    page_size: int,
    order: str = "updated",
    include_superseded: bool = False,
    include_tools: bool = False,
) -> list[dict]:
    """One page of the caller's sessions (all of them when `page` is None) in `order`, each
    with its messages oldest first. Two queries for the page whatever its size."""
    rows = _sessions_page(user, page, page_size, order)
    return with_messages([s for (s,) in rows], include_superseded, include_tools)


def _message_count():
    return (
        select(func.count(Message.id))
        .where(Message.session_id == ChatSession.id, CURRENT, NO_TOOLS)
        .correlate(ChatSession)
        .scalar_subquery()
    )


def summaries(user: User, page: int | None, page_size: int, order: str = "updated") -> list[dict]:
    """One page of the caller's sessions (all when `page` is None) in `order`, with message
    counts (superseded messages not counted) and no messages."""
    rows = _sessions_page(user, page, page_size, order, _message_count())
    return [_as_dict(s, message_count=n) for s, n in rows]


def summary(session: ChatSession) -> dict:
    count = db.session.scalar(
        select(func.count(Message.id)).where(Message.session_id == session.id, CURRENT, NO_TOOLS)
    )
    return _as_dict(session, message_count=count)


def session_with_messages(
    session: ChatSession, include_superseded: bool = False, include_tools: bool = False
) -> dict:
    return with_messages([session], include_superseded, include_tools)[0]


def _with_session(statement):
    """Messages are shown with their session's number: load it in the same query."""
    return statement.options(joinedload(Message.session))
