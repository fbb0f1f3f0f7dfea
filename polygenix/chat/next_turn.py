"""A turn of an existing session on PostgreSQL as one statement: the usage added, the session
touched, the question and the reply (if any) inserted, one data-modifying `WITH` sent as its
own transaction (autocommit): no `BEGIN` nor `COMMIT` round trip, and no row stays locked once
it ends.

Each step reads the output of the one before it, which fixes PostgreSQL's order (otherwise
unspecified): a key-share lock on the user's row, the usage row added for the locked user, the
session touched (the same UPDATE as session_rows.touch_session: still the user's session of
that number; the transcript digest grown if it is still the one the turn knew), the question
inserted from the touched session, the reply from the question. An account's deletion locks the
user's row, then deletes their sessions (and messages) before their usage rows: with the user's
row first, a turn waits for a deletion under way (then finds the user gone and writes nothing),
or the deletion waits for the statement, and neither deadlocks. A session gone meanwhile (or no
longer the user's) is touched by nothing and gets no message; the usage still counts, as when
the ORM's transaction finds the session gone.

Only the plain case goes this way (first_turn.py's counterpart for an existing session); the
rest (SQLite, tool results, attachments, a retry that supersedes its failed attempt, a budget's
reservation to release or a Responses record written with it) takes commit.py's path, rows
written one by one.
"""

from functools import cache

from sqlalchemy import bindparam, select

from .. import database
from ..extensions import db
from ..governance import ledger
from ..models import ChatSession, Message, UsageDaily, User
from . import session_rows as rows
from .first_turn import MESSAGE_COLUMNS, inserted, keep
from .turn_state import Turn

_users = User.__table__
_usage = UsageDaily.__table__
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
def _statement(change: rows.Digest, with_reply: bool, with_usage: bool):
    # The user's row first: an account deletion locks it before it deletes their rows.
    user = (
        select(_users.c.id)
        .where(_users.c.id == bindparam("owner_id"))
        .with_for_update(read=True, key_share=True)
        .cte("owner")
    )
    owner = select(user.c.id).scalar_subquery()
    if with_usage:  # then the usage row: added for the locked user
        used = ledger.upsert_for(select(user.c.id)).returning(_usage.c.user_id).cte("used")
        owner = select(used.c.user_id).scalar_subquery()
    # The session once the usage is added (its UPDATE reads the upsert's user).
    touched = rows.touching(owner, change).returning(_sessions.c.id).cte("touched")
    question = inserted("question", "q_", {"session_id": touched.c.id})
    columns, joined = [question.c.id], question
    if with_reply:
        given = {"session_id": question.c.session_id, "reply_to_id": question.c.id}
        reply = inserted("reply", "r_", given)
        columns.append(reply.c.id)
        joined = joined.join(reply, reply.c.reply_to_id == question.c.id)
    return select(*columns).select_from(joined)


def store(
    turn: Turn,
    question: Message,
    reply: Message | None,
    usage: ledger.Entry | None,
    now,
    added: list[tuple[str, str]],
) -> bool:
    """Add `usage`, touch the turn's session (changed `now`, its transcript grown by `added`),
    insert `question` and `reply` (its answer, if any) in one statement sent as its own
    transaction, committed, and give the rows their ids. False if the session is no longer
    the user's (deleted, with the account or alone): nothing stored but the usage."""
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
    if reply is not None:
        params |= {f"r_{name}": getattr(reply, name) for name in MESSAGE_COLUMNS}
    if usage is not None:
        params |= usage.params()
    statement = _statement(change, reply is not None, usage is not None)
    row = db.session.execute(statement, params).first()
    db.session.commit()  # in autocommit, a no-op: the statement was its transaction
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
