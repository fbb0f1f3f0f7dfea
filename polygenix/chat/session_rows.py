"""What a turn's store writes besides its own messages, each in the caller's transaction: the
session touched (changed now, its transcript digest grown), the messages a turn answering again
replaces marked superseded, a new session's first messages, the question's attachments; and
the checks that the rows are still the turn's.

Each write names the session's user and number and a message's session, so a row that stopped
being the turn's (deleted meanwhile, or another user's row that took a reused id) is never
written.
"""

import enum
from collections.abc import Mapping
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Executable,
    and_,
    bindparam,
    case,
    column,
    exists,
    insert,
    select,
    table,
    update,
)
from sqlalchemy.orm import aliased

from .. import clock
from ..attachments import store as attachments
from ..extensions import db
from ..governance import reservations
from ..models import ChatSession, Message
from ..providers.messages import text_of
from . import transcript
from .turn_state import Kind, Turn

CURRENT = Message.superseded.is_(False)


def touch(turn: Turn, added: list[tuple[str, str]] | None = None) -> bool:
    """The session changed and was active (now), and its transcript grew by `added` (a whole
    turn); a turn answering again rewrote it, so its digest is unknown. False if it is gone."""
    digest: str | None | object = turn.digest
    if turn.kind.again:
        added, digest = None, UNKNOWN
    return touch_session(turn.user_id, turn.stored_session, clock.now(), digest, added)


UNKNOWN = object()  # a transcript digest that can no longer be known


class Digest(enum.Enum):
    """What touching a session does to its transcript digest."""

    KEPT = "kept"  # no whole turn added
    UNKNOWN = "unknown"  # rewritten: it can no longer be known
    GROWN = "grown"  # a whole turn added to the digest the turn knew
    GROWN_FROM_NONE = "grown from none"  # a whole turn added to a session that had none


def touch_session(user_id: int, session: ChatSession, now, digest, added) -> bool:
    """`session` changed now and its transcript (digest `digest` as the turn knew it) grew by
    `added`, if the row is still the user's session of that number: one UPDATE. False if not
    (deleted, or its id reused by another session, or the account gone).

    On PostgreSQL the same UPDATE first locks the user's row (key share), before the session's:
    an account's deletion locks the user's row, then its sessions, so a transaction that held
    the session and then wrote a row naming the user (a response's record, an attachment) would
    wait for the deletion while holding the session it waits for. Held first, the touch waits
    for a deletion under way (then finds the account gone and touches nothing), or the deletion
    waits for the transaction, its commit. SQLite locks the whole database for a writer."""
    change, params = digest_change(digest, added)
    params |= {"owner_id": user_id, "session_id": session.id, "session_number": session.number}
    held = db.engine.dialect.name == "postgresql"
    return changed(_touch(change, held), params | {"now": now}) == 1


def digest_change(digest, added) -> tuple[Digest, dict[str, object]]:
    """How touching a session changes its transcript digest (`digest` as the turn knew it, or
    UNKNOWN; `added`, the whole turn it grows by, if any), and the values `touching`'s
    statement binds for it."""
    if digest is UNKNOWN:
        return Digest.UNKNOWN, {}
    if not added:
        return Digest.KEPT, {}
    grown = transcript.extend(cast(str | None, digest), added)
    if digest is None:
        return Digest.GROWN_FROM_NONE, {"grown": grown}
    return Digest.GROWN, {"known": digest, "grown": grown}


# The session's columns a touch names, and no others: a statement's parameters named as another
# column (a usage's `model`, in next_turn.py's) are never taken for values to set.
_sessions = table(
    "chat_sessions",
    *(
        column(c.name, c.type)
        for c in ChatSession.__table__.c
        if c.name in ("id", "user_id", "number", "changed_at", "updated_at", "transcript_digest")
    ),
)


def touching(user_id, change: Digest):
    """The UPDATE touching the session of bound `session_id` and `session_number` if it is
    still the session of `user_id` (a bound value or a query of one): changed and active at
    bound `now`, its transcript digest changed as `change` says (binding `digest_change`'s
    values)."""
    now = bindparam("now", type_=_sessions.c.changed_at.type)
    values: dict[str, Any] = {"changed_at": now, "updated_at": now}
    if change is Digest.UNKNOWN:
        values["transcript_digest"] = None
    elif change is not Digest.KEPT:
        values["transcript_digest"] = _digest_after(change is Digest.GROWN_FROM_NONE)
    return (
        update(_sessions)
        .where(
            _sessions.c.id == bindparam("session_id"),
            _sessions.c.user_id == user_id,
            _sessions.c.number == bindparam("session_number"),
        )
        .values(values)
    )


# The user of bound `owner_id`, their row locked as reservations.HOLD locks it: a scalar
# subquery of the UPDATE's WHERE, which PostgreSQL runs (an InitPlan) as it scans for the
# session, before it locks the session's row; no row (the account gone): no session matches.
_OWNER = reservations.HOLD.scalar_subquery()


@cache
def _touch(change: Digest, held: bool):
    return touching(_OWNER if held else bindparam("owner_id"), change)


def changed(statement: Executable, params: Mapping[str, Any] | None = None) -> int:
    """How many rows an UPDATE or DELETE `statement` changed."""
    return cast(CursorResult[Any], db.session.execute(statement, params)).rowcount


def _digest_after(from_none: bool):
    """The session's transcript digest once a whole turn follows it: extended (bound `grown`)
    from the digest the turn knew (bound `known`, or none: `from_none`), if the session still
    has that one; else unknown (another turn came between)."""
    column = _sessions.c.transcript_digest
    still = column.is_(None) if from_none else column == bindparam("known")
    return case((still, bindparam("grown", type_=column.type)), else_=None)


_SUPERSEDE = (
    update(Message)
    .where(
        Message.session_id == bindparam("in_session"),
        Message.id > bindparam("after"),
        Message.id != bindparam("keep"),
        CURRENT,
    )
    .values(superseded=True)
    .execution_options(synchronize_session=False)
)


def supersede(turn: Turn, keep: int = 0) -> None:
    """Everything after the turn's question (but message `keep`) is superseded."""
    db.session.execute(
        _SUPERSEDE, {"in_session": turn.session_id, "after": turn.question_id, "keep": keep}
    )


def still_current(turn: Turn, reply_id: int | None = None) -> bool:
    """Whether the question a turn answers again is still current, with the words it was
    answered for (no edit of it or of an earlier message came meanwhile), and so is its new
    reply `reply_id` (no other regenerate replaced it); for a regenerate, also whether no later
    question came meanwhile."""
    question = db.session.execute(
        select(Message.content).where(
            Message.id == turn.question_id, Message.session_id == turn.session_id, CURRENT
        )
    ).one_or_none()
    if question is None or question.content != turn.content:
        return False
    if reply_id is not None and db.session.scalar(
        select(Message.superseded).where(
            Message.id == reply_id, Message.session_id == turn.session_id
        )
    ):
        return False
    return turn.kind is not Kind.REGENERATE or not db.session.scalar(
        select(
            exists().where(
                Message.session_id == turn.session_id,
                Message.id > turn.question_id,
                Message.is_bot.is_(False),
                CURRENT,
            )
        )
    )


def own_question(turn: Turn):
    """The question a turn answers, if it is still in the turn's session."""
    return and_(Message.id == turn.question_id, Message.session_id == turn.session_id)


def attach(turn: Turn, question_id: int) -> None:
    """The question's attachments, in the transaction that stores it."""
    if turn.attachment_ids is not None:
        attachments.attach(turn.user_id, question_id, turn.attachment_ids)
    for position, (data, info) in enumerate(turn.inline_images):
        attachments.add(turn.user_id, data, info, question_id, position, quota=False)


_PREVIOUS = aliased(Message)


def _previous(column):
    """`column` of the message just before the one being updated, in its session."""
    return (
        select(column)
        .where(_PREVIOUS.session_id == Message.session_id, _PREVIOUS.id < Message.id)
        .order_by(_PREVIOUS.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_SEED = insert(Message.__table__)


def add_seed(session: ChatSession, turn: Turn) -> None:
    """The earlier turns a conversation brought, as messages of its new session: one INSERT of
    them all, in order, then one UPDATE that makes each reply answer the question just before
    it. Up to V1_MAX_MESSAGES of them (row by row, a flood of messages held SQLite's write lock
    for a minute)."""
    rows = [
        {
            "session_id": session.id,
            "is_bot": m["role"] == "assistant",
            "content": text_of(m["content"]),
            "created_at": turn.asked_at,
            "superseded": False,
            "incomplete": False,
            "tool_calls": m.get("tool_calls"),
            "tool_call_id": m.get("tool_call_id"),
        }
        for m in turn.seed
    ]
    # One statement executed for every row (a multi-row INSERT on PostgreSQL): compiling a
    # VALUES clause of hundreds of rows would cost more than writing them, lock held.
    db.session.execute(_SEED, rows)
    if any(m["role"] == "assistant" for m in turn.seed[1:]):
        db.session.execute(
            update(Message)
            .where(
                Message.session_id == session.id,
                Message.is_bot.is_(True),
                _previous(_PREVIOUS.is_bot).is_(False),
            )
            .values(reply_to_id=_previous(_PREVIOUS.id))
            .execution_options(synchronize_session=False)
        )
