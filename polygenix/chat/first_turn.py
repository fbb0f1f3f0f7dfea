"""A new session's first turn on PostgreSQL as one statement: the user's session counter counted
up, the session, the question, the reply (if any), the usage (if any), the call's budget
reservation released (if any) and a row the caller keeps with the reply (if any: a Responses API
record, Turn.new_row), one data-modifying `WITH` sent as its own transaction (autocommit). The
user's row (the counter, which queues the user's new sessions) is locked for that statement
alone, not for the round trips of writing the rows one by one and a `COMMIT`: one user's
hundreds of new sessions at once no longer wait in a long queue.

Rows are locked in the order every turn and an account deletion take them: the user's first
(the counter), then their usage row, then their reservation's; the new session, messages and
record are rows no one else sees.
SQLite has no data-modifying `WITH`: there the same rows are written by a Core statement each
(the counter's `UPDATE … RETURNING`, then each row's `INSERT … RETURNING`, the usage, the
release), in one transaction, without the ORM's unit of work. Only the plain case goes this
way; the rest (a number asked for; a conversation's earlier messages, tool results,
attachments; the counter at its top, or behind the user's numbers; the account gone) takes
commit.py's path, through the ORM.
"""

from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import JSON, bindparam, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached

from .. import database
from ..extensions import db
from ..governance import charging, ledger
from ..models import MAX_ID, ChatSession, Message, User
from .history import COUNT_UP
from .turn_state import NewRow, Turn

_users = User.__table__
_sessions = ChatSession.__table__
_messages = Message.__table__
_SESSION_COLUMNS = ("title", "created_at", "changed_at", "updated_at", "transcript_digest")
MESSAGE_COLUMNS = tuple(
    c.name for c in _messages.c if c.name not in ("id", "session_id", "reply_to_id")
)


def applies(turn: Turn) -> bool:
    """Whether the turn's store can be the one statement (on SQLite, its Core statements): a new
    session, numbered by the counter, with nothing but its question and reply."""
    return (
        turn.session is None
        and turn.number is None
        and not turn.seed
        and not turn.results
        and not (turn.attachment_ids or turn.inline_images)
        and db.engine.dialect.name in ("postgresql", "sqlite")
    )


def _bound(prefix: str, table, names) -> list:
    """A parameter for each of `names`, typed as its column (None in JSON: SQL's NULL)."""
    types = {name: table.c[name].type for name in names}
    return [
        bindparam(prefix + name, type_=JSON(none_as_null=True) if isinstance(t, JSON) else t)
        for name, t in types.items()
    ]


def inserted(name: str, prefix: str, given: dict):
    """A CTE inserting one message: the columns `given` taken from other CTEs, the others bound
    parameters named `prefix` + the column's name; it returns the new id, its session's and the
    message it answers."""
    return (
        insert(_messages)
        .from_select(
            [*given, *MESSAGE_COLUMNS],
            select(*given.values(), *_bound(prefix, _messages, MESSAGE_COLUMNS)),
        )
        .returning(_messages.c.id, _messages.c.session_id, _messages.c.reply_to_id)
        .cte(name)
    )


@cache
def _statement(
    with_reply: bool, with_usage: bool, with_release: bool, new_row: Callable[[dict], Any] | None
):
    counted = (
        update(_users)
        .where(_users.c.id == bindparam("user_id"), _users.c.last_session_number < MAX_ID)
        .values(last_session_number=_users.c.last_session_number + 1)
        .returning(_users.c.id, _users.c.last_session_number)
        .cte("counted")
    )
    session = (
        insert(_sessions)
        .from_select(
            ["user_id", "number", *_SESSION_COLUMNS],
            select(
                counted.c.id,
                counted.c.last_session_number,
                *_bound("s_", _sessions, _SESSION_COLUMNS),
            ),
        )
        .returning(_sessions.c.id, _sessions.c.number)
        .cte("session")
    )
    question = inserted("question", "q_", {"session_id": session.c.id})
    columns = [session.c.id, session.c.number, question.c.id]
    joined = session.join(question, question.c.session_id == session.c.id)
    if with_reply:
        given = {"session_id": question.c.session_id, "reply_to_id": question.c.id}
        reply = inserted("reply", "r_", given)
        columns.append(reply.c.id)
        joined = joined.join(reply, reply.c.reply_to_id == question.c.id)
    # The usage and the release only once the user's row is locked: they read the counted user.
    settled, _ = charging.settling(select(counted.c.id), with_usage, with_release)
    statement = select(*columns).select_from(joined).add_cte(*settled)
    if with_reply and new_row is not None:
        statement = kept_with(statement, reply, new_row)
    return statement


def kept_with(statement, reply, new_row: Callable[[dict], Any]):
    """`statement` with `new_row`'s INSERT or UPDATE (Turn.new_row) as its CTE "kept", its session,
    question and reply ids from the reply's row as `reply` (the reply's CTE) returns it: no
    reply inserted, no row kept."""
    ids = {"session_id": reply.c.session_id, "question_id": reply.c.reply_to_id}
    return statement.add_cte(new_row(ids | {"reply_id": reply.c.id}).cte("kept"))


def _insert(table, prefix: str, given: tuple, names):
    """An `INSERT … RETURNING id` of one row: the columns `given` bound by their own names, the
    others by `prefix` + theirs."""
    values: dict[str, Any] = {name: bindparam(name) for name in given}
    values |= dict(zip(names, _bound(prefix, table, names), strict=True))
    return insert(table).values(values).returning(table.c.id)


_SESSION = _insert(_sessions, "s_", ("user_id", "number"), _SESSION_COLUMNS)
_QUESTION = _insert(_messages, "q_", ("session_id",), MESSAGE_COLUMNS)
_REPLY = _insert(_messages, "r_", ("session_id", "reply_to_id"), MESSAGE_COLUMNS)


@cache
def _alone(new_row: Callable[[dict], Any]):
    """`new_row`'s INSERT with the turn's ids bound (SQLite: no statement to take them from)."""
    ids = ("session_id", "question_id", "reply_id")
    return new_row({name: bindparam(f"{name}_") for name in ids})


def _one_by_one(
    turn: Turn, params: dict, with_reply: bool, usage, release: bool, new_row
) -> tuple | None:
    """SQLite: the rows `_statement` writes, by a statement each, in the caller's transaction
    (the database's write lock, taken by the first: no order of rows to keep); as its row, or
    None when the counter counted nothing (the account gone, the counter at its top)."""
    execute = db.session.connection().execute
    number = execute(COUNT_UP, params).scalar()
    if number is None:
        return None
    session_id = execute(_SESSION, params | {"number": number}).scalar_one()
    question_id = execute(_QUESTION, params | {"session_id": session_id}).scalar_one()
    reply_id = None
    if with_reply:
        ids = {"session_id": session_id, "reply_to_id": question_id}
        reply_id = execute(_REPLY, params | ids).scalar_one()
    charging.settle(turn, usage, release, held=True)  # by the counter's UPDATE
    if with_reply and new_row is not None:
        ids = {"session_id_": session_id, "question_id_": question_id, "reply_id_": reply_id}
        execute(_alone(new_row), params | ids)
    return session_id, number, question_id, reply_id


def _values(row, names) -> dict:
    return {name: getattr(row, name) for name in names}


def store(
    turn: Turn,
    session: ChatSession,
    question: Message,
    reply: Message | None,
    usage: ledger.Entry | None,
    release: bool,
    new_row: NewRow | None = None,
) -> bool:
    """Write `session` (numbered by the user's counter, counted up), `question`, `reply` (its
    answer, if any), `usage`, the release of the turn's budget reservation (if any, and
    `release`: the call is over) and `new_row` (kept with the reply, given its ids) in one
    statement and give the rows their ids. Sent as its own transaction (autocommit) unless one
    has begun: no `BEGIN` nor `COMMIT` round trip, and the database lets go of the user's row
    as the statement ends, however long this thread waits to run again. False, the
    transaction rolled back, when this cannot store them (the account gone, the counter at its
    top or behind the user's numbers): commit.py's path then does, and tells which."""
    database.alone(db.session())
    for message in (question, reply):
        if message is not None:
            message.superseded = bool(message.superseded)
            message.incomplete = bool(message.incomplete)
    params: dict[str, object] = {"user_id": turn.user_id}
    params |= {f"s_{name}": value for name, value in _values(session, _SESSION_COLUMNS).items()}
    params |= {f"q_{name}": value for name, value in _values(question, MESSAGE_COLUMNS).items()}
    if reply is not None:
        params |= {f"r_{k}": v for k, v in _values(reply, MESSAGE_COLUMNS).items()}
    kept = None
    if new_row is not None and reply is not None:
        kept = new_row.inserted
        params |= new_row.params
    try:
        if db.session.get_bind().dialect.name == "sqlite":
            row = _one_by_one(turn, params, reply is not None, usage, release, kept)
        else:
            # Here alone: SQLite's usage is its own statement, and an INSERT … VALUES given a
            # parameter named as a column of its table (the usage's `model`) writes it too.
            params |= charging.settling_params(turn, usage, release)
            releasing = release and turn.reservation is not None
            statement = _statement(reply is not None, usage is not None, releasing, kept)
            row = db.session.execute(statement, params).first()
    except IntegrityError:  # the counter behind the user's numbers (a restored backup's)
        row = None
    if row is None:
        db.session.rollback()
        return False
    session.id, session.number, session.user_id = row[0], row[1], turn.user_id
    session.system_prompt = session.model = None
    question.id, question.session_id, question.reply_to_id = row[2], session.id, None
    question.session = session
    if reply is not None:
        reply.id, reply.session_id, reply.reply_to_id = row[3], session.id, question.id
        reply.session, reply.reply_to = session, question
    return True


def keep(*rows) -> None:
    """The stored rows in the ORM's session, as if loaded: no query when they are read."""
    for row in rows:
        if row is None:
            continue
        for attribute in inspect(type(row)).attrs:  # left unset: written as null, read as None
            if attribute.key not in row.__dict__:
                setattr(row, attribute.key, None)
        make_transient_to_detached(row)
    db.session.add_all([row for row in rows if row is not None])
