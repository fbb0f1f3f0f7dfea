"""Reading a user's sessions: finding one, listing them, their messages, and the ETag that lets
a poll of an unchanged history cost one small query."""

import hashlib
from datetime import datetime

from flask_smorest import abort
from sqlalchemy import BigInteger, bindparam, cast, exists, func, select
from sqlalchemy.orm import aliased, joinedload

from ..api import page_of
from ..extensions import db
from ..models import MAX_ID, ChatSession, Message, User

# The statements every chat turn runs are built once: building one costs more than running it.
_SESSION = select(ChatSession).where(
    ChatSession.user_id == bindparam("user_id"), ChatSession.number == bindparam("number")
)
_HIGHEST_NUMBER = select(func.max(ChatSession.number)).where(
    ChatSession.user_id == bindparam("user_id")
)
_VERSION = select(func.count(ChatSession.id), func.max(ChatSession.changed_at)).where(
    ChatSession.user_id == bindparam("user_id")
)
# A reply still being streamed is shown once it is finished (or flagged by the sweep).
SHOWN = Message.lease_until.is_(None)


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
    if highest < MAX_ID:
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


def etag(user: User, query: str) -> str:
    """A tag that changes whenever anything a history or sessions listing shows changes: a
    session made, deleted, renamed, or given a message. One indexed query."""
    count, changed = db.session.execute(_VERSION, {"user_id": user.id}).one()
    moment = changed.isoformat() if isinstance(changed, datetime) else str(changed)
    digest = hashlib.sha256(f"{user.id}|{count}|{moment}|{query}".encode()).hexdigest()
    return digest[:32]


def _sessions_page(user: User, page: int | None, page_size: int, *columns) -> tuple[int, list]:
    """The total of the caller's sessions, and one page of them (newest first) with `columns`;
    every session when `page` is None."""
    total = db.session.scalar(
        select(func.count(ChatSession.id)).where(ChatSession.user_id == user.id)
    )
    statement = (
        select(ChatSession, *columns)
        .where(ChatSession.user_id == user.id)
        .order_by(ChatSession.created_at.desc(), ChatSession.id.desc())
    )
    if page is not None:
        statement = page_of(statement, page, page_size)
    return total, db.session.execute(statement).all()


def _as_dict(session: ChatSession, **extra) -> dict:
    return {
        "number": session.number,
        "title": session.title,
        "created_at": session.created_at,
    } | extra


def history(user: User, page: int | None, page_size: int) -> tuple[int, list[dict]]:
    """One page of the caller's sessions (all of them when `page` is None), newest first, each
    with its messages oldest first.

    Two queries for the page whatever its size: the sessions, then all their messages.
    """
    total, rows = _sessions_page(user, page, page_size)
    by_session: dict[int, list[Message]] = {s.id: [] for (s,) in rows}
    if by_session:
        for message in db.session.scalars(
            _with_session(select(Message))
            .where(Message.session_id.in_(by_session), SHOWN)
            .order_by(Message.session_id, Message.id)
        ):
            by_session[message.session_id].append(message)
    return total, [_as_dict(s, messages=by_session[s.id]) for (s,) in rows]


def _message_count():
    return (
        select(func.count(Message.id))
        .where(Message.session_id == ChatSession.id, SHOWN)
        .correlate(ChatSession)
        .scalar_subquery()
    )


def summaries(user: User, page: int | None, page_size: int) -> tuple[int, list[dict]]:
    """One page of the caller's sessions (all when `page` is None), newest first, with message
    counts and no messages."""
    total, rows = _sessions_page(user, page, page_size, _message_count())
    return total, [_as_dict(s, message_count=n) for s, n in rows]


def summary(session: ChatSession) -> dict:
    count = db.session.scalar(
        select(func.count(Message.id)).where(Message.session_id == session.id, SHOWN)
    )
    return _as_dict(session, message_count=count)


def session_with_messages(session: ChatSession) -> dict:
    messages = db.session.scalars(
        _with_session(select(Message))
        .where(Message.session_id == session.id, SHOWN)
        .order_by(Message.id)
    ).all()
    return _as_dict(session, messages=messages)


def _with_session(statement):
    """Messages are shown with their session's number: load it in the same query."""
    return statement.options(joinedload(Message.session))
