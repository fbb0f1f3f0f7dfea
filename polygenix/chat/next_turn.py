"""A turn of an existing session on PostgreSQL as one statement: the usage added, the call's
budget reservation released (if any), the session touched, the question and the reply (if any)
inserted, and a row the caller keeps with the reply (if any: a Responses API record,
Turn.new_row), one data-modifying `WITH` sent as its own transaction (autocommit): no `BEGIN`
nor `COMMIT` round trip, and no row stays locked once it ends.

Each step reads the output of the one before it, which fixes PostgreSQL's order (otherwise
unspecified): a key-share lock on the user's row, the usage row added for the locked user, the
reservation released for the user the usage names, the session touched (the same UPDATE as
session_rows.touch_session: still the user's session of that number; the transcript digest
grown if it is still the one the turn knew), the question inserted from the touched session,
the reply from the question, the kept row from the reply. An account's deletion locks the
user's row, then deletes their sessions (and messages) before their usage rows: with the user's
row first, a turn waits for a deletion under way (then finds the user gone and writes nothing),
or the deletion waits for the statement, and neither deadlocks. A session gone meanwhile (or no
longer the user's) is touched by nothing and gets no message nor kept row; the usage still
counts and the reservation goes, as when the ORM's transaction finds the session gone.

Only the plain case goes this way (first_turn.py's counterpart for an existing session); the
rest (SQLite, tool results, attachments, a retry that supersedes its failed attempt) takes
commit.py's path, rows written one by one. The kept row may be one the call wrote before (a
Responses record that claimed the call's retry key): an UPDATE of it, a part of the statement
all the same.
"""

from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import database
from ..extensions import db
from ..governance import charging, ledger, reservations
from ..models import ChatSession, Message
from . import session_rows as rows
from .first_turn import MESSAGE_COLUMNS, inserted, keep, kept_with
from .turn_state import NewRow, Turn

_sessions = ChatSession.__table__


def applies(turn: Turn) -> bool:
    """Whether the turn's store can be the one statement: a session the user has, on
    PostgreSQL, with nothing but its question and reply (a retry's failed attempt is
    superseded row by row)."""
    return (
        turn.session is not None
        and not turn.seed
        and not turn.results
        and not (turn.attachment_ids or turn.inline_images)
        and turn.repeats is None
        and db.engine.dialect.name == "postgresql"
    )


@cache
def _statement(
    change: rows.Digest,
    with_reply: bool,
    with_usage: bool,
    with_release: bool,
    new_row: Callable[[dict], Any] | None,
):
    # The user's row first (reservations.HOLD): an account deletion locks it before it
    # deletes their rows. Then the usage added and the reservation released for the locked user.
    user = reservations.HOLD.cte("owner")
    settled, after = charging.settling(select(user.c.id), with_usage, with_release)
    owner = after.scalar_subquery()
    # The session once the usage is added (its UPDATE reads the upsert's user).
    touched = rows.touching(owner, change).returning(_sessions.c.id).cte("touched")
    question = inserted("question", "q_", {"session_id": touched.c.id})
    columns, joined = [question.c.id], question
    if with_reply:
        given = {"session_id": question.c.session_id, "reply_to_id": question.c.id}
        reply = inserted("reply", "r_", given)
        columns.append(reply.c.id)
        joined = joined.join(reply, reply.c.reply_to_id == question.c.id)
    statement = select(*columns).select_from(joined).add_cte(*settled)
    if with_reply and new_row is not None:
        statement = kept_with(statement, reply, new_row)
    return statement


def store(
    turn: Turn,
    question: Message,
    reply: Message | None,
    usage: ledger.Entry | None,
    release: bool,
    now,
    added: list[tuple[str, str]],
    new_row: NewRow | None = None,
) -> bool | None:
    """Add `usage`, release the turn's budget reservation (if any, and `release`: the call is
    over), touch the turn's session (changed `now`, its transcript grown by `added`), insert
    `question`, `reply` (its answer, if any) and `new_row` (kept with the reply, given its ids)
    in one statement, its own transaction (committed), and give the rows their ids. False if
    the session is no longer the user's (deleted, with the account or alone): nothing stored
    but the usage and the release, committed. None if the statement could not be written (a
    row it names went meanwhile, such as the response a record continues): nothing written,
    rolled back, and commit.py's path then stores the turn."""
    session: ChatSession = turn.stored_session
    database.alone(db.session())
    for message in (question, reply):
        if message is not None:
            message.superseded = bool(message.superseded)
            message.incomplete = bool(message.incomplete)
    change, params = rows.digest_change(session.transcript_digest, added)
    params |= {
        "owner_id": turn.user_id,
        "session_id": session.id,
        "session_number": session.number,
        "now": now,
    }
    params |= {f"q_{name}": getattr(question, name) for name in MESSAGE_COLUMNS}
    kept = None
    if reply is not None:
        params |= {f"r_{name}": getattr(reply, name) for name in MESSAGE_COLUMNS}
        if new_row is not None:
            kept = new_row.inserted
            params |= new_row.params
    params |= charging.settling_params(turn, usage, release)
    releasing = release and turn.reservation is not None
    statement = _statement(change, reply is not None, usage is not None, releasing, kept)
    try:
        row = db.session.execute(statement, params).first()
    except IntegrityError:
        db.session.rollback()
        return None
    db.session.commit()  # alone, a no-op: the statement was its transaction
    if row is None:
        return False
    session = db.session.merge(session, load=False)
    question.id, question.session_id, question.reply_to_id = row[0], session.id, None
    question.session = session
    if reply is not None:
        reply.id, reply.session_id, reply.reply_to_id = row[1], session.id, question.id
        reply.session, reply.reply_to = session, question
    keep(question, reply)
    turn.session = session
    return True
