"""How PolyGenix talks to its database: pool settings and timeouts, so that a database that
refuses, resets or goes silent costs requests a bounded wait and a 503, never a hang.

PostgreSQL connections get a connect timeout, a statement timeout and an idle-in-transaction
timeout (the server ends what runs or waits too long), TCP keepalives and a TCP user timeout (the
kernel gives up on a peer that stopped answering), and a deadline on every wait for the server's
answer (for a database that is silent while the network still carries the bytes: psycopg's own
waits are given a timeout). The pool checks a connection that sat idle before handing it out
(see `_checked`), and gives up waiting for a free one after DB_POOL_TIMEOUT. SQLite's busy
timeout is set with its pragmas (extensions.py); a process's SQLite writers take turns (see
`_sqlite_write_turn`).
"""

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.pool import Pool, QueuePool

from .pool import FairQueuePool

# connect_args key of the deadline on a PostgreSQL connection's waits (taken out before psycopg
# sees the arguments).
ANSWER_TIMEOUT = "polygenix_answer_timeout"
# A connection given back to the pool less than this long ago is handed out again unchecked.
PING_AFTER_IDLE = 1.0
_IDLE_SINCE = "polygenix_idle_since"  # in a pooled connection's info: when it was given back


class _Connection(psycopg.Connection):
    """psycopg's connection with a deadline on every wait for the server."""

    answer_timeout: float | None = None

    def wait(self, gen, interval=None, timeout=None):
        timeout = timeout if timeout is not None else self.answer_timeout
        polling = {} if interval is None else {"interval": interval}
        started = time.monotonic()
        try:
            return super().wait(gen, timeout=timeout, **polling)
        except psycopg.OperationalError:
            if timeout is not None and time.monotonic() - started >= timeout:
                # The connection's state is unknown: it is closed, so the pool discards it.
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"the database did not answer within {timeout:g} s"
                ) from None
            raise


@event.listens_for(Engine, "do_connect")
def _connect(dialect, _record, cargs, cparams):
    timeout = cparams.pop(ANSWER_TIMEOUT, None)
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return None  # the dialect connects as usual
    connection = _Connection.connect(*cargs, **cparams)
    connection.answer_timeout = timeout
    return connection


@event.listens_for(Pool, "checkin")
def _given_back(_dbapi_connection, record) -> None:
    if record is not None:
        record.info[_IDLE_SINCE] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _checked(dbapi_connection, record, _proxy) -> None:
    """A PostgreSQL connection idle for PING_AFTER_IDLE or more is asked for `SELECT 1` first;
    one that fails is replaced (the pool reconnects) rather than handed to a request.

    SQLAlchemy's pool_pre_ping asks every time: a round trip per transaction, three or four a
    chat turn, though a connection just given back cannot have gone stale meanwhile, short of a
    server restart, which the first query that fails detects (SQLAlchemy then drops every
    connection of the pool made before it).
    """
    idle_since = record.info.get(_IDLE_SINCE)
    if not isinstance(dbapi_connection, _Connection) or idle_since is None:
        return  # SQLite (a file: no server that could have gone), or a new connection
    if time.monotonic() - idle_since < PING_AFTER_IDLE:
        return
    dbapi_connection.autocommit = True  # no BEGIN: one round trip
    try:
        dbapi_connection.execute("SELECT 1")
    except psycopg.Error as e:
        raise DisconnectionError() from e
    finally:
        if not dbapi_connection.closed:
            dbapi_connection.autocommit = False


# --- SQLite: one writer of a process at a time, the others queued -------------------------------

_WRITES = re.compile(
    r"\s*(INSERT|UPDATE|DELETE|REPLACE|WITH\b.*\b(INSERT|UPDATE|DELETE)\b)", re.I | re.S
)
_TURN = "polygenix_write_turn"  # in a connection's info: the lock of the write turn it holds
_TURNS: dict[str, threading.Lock] = {}  # by database file
_TURNS_LOCK = threading.Lock()
# How long a writer waits for its turn: SQLite's own busy timeout is then spent on the other
# processes' writers alone.
WRITE_TURN_TIMEOUT = 30.0


def _turn_of(database: str) -> threading.Lock:
    with _TURNS_LOCK:
        return _TURNS.setdefault(database, threading.Lock())


@event.listens_for(Engine, "before_cursor_execute")
def _sqlite_write_turn(conn, _cursor, statement, parameters, _context, _many) -> None:
    """Before an SQLite transaction's first write: this process's write turn, waited for in a
    queue of threads (blocked, not polling) and held until the transaction ends.

    SQLite has one writer at a time. Waiting for it, a connection polls with sleeps of up to
    100 ms (the busy handler), so with hundreds of threads writing at once (a burst of new
    streams) a writer could lose every poll for the whole busy timeout and answer 503 while the
    lock was free most of the time. Queued here, a process's writers take the lock in turn and
    only the other processes' writers are polled for.
    """
    if conn.dialect.name != "sqlite" or _TURN in conn.info or not _WRITES.match(statement):
        return
    turn = _turn_of(conn.engine.url.database or "")
    if not turn.acquire(timeout=WRITE_TURN_TIMEOUT):
        raise OperationalError(
            statement, parameters, sqlite3.OperationalError("database is locked")
        )
    conn.info[_TURN] = turn


def _end_turn(info) -> None:
    turn = info.pop(_TURN, None)
    if turn is not None:
        turn.release()


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _transaction_ended(conn) -> None:
    # A connection invalidated (the database refused, reset or went silent) has no DBAPI
    # connection whose info could be read: `conn.info` would reconnect, which SQLAlchemy refuses
    # inside the transaction being rolled back (PendingRollbackError, raised by whatever rolled
    # back: a 500 where the outage is a 503). Its turn ended as it was invalidated
    # (`_connection_invalidated`).
    if conn.invalidated or conn.closed:
        return
    _end_turn(conn.info)


# Given back to the pool, or dropped, without a commit or rollback of its own.
@event.listens_for(Pool, "reset")
def _connection_reset(_dbapi_connection, record, _reset_state) -> None:
    if record is not None:
        _end_turn(record.info)


@event.listens_for(Pool, "invalidate")
def _connection_invalidated(_dbapi_connection, record, _exception) -> None:
    if record is not None:
        _end_turn(record.info)


@event.listens_for(Pool, "close")
def _connection_closed(_dbapi_connection, record) -> None:
    if record is not None:
        _end_turn(record.info)


def engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    # The connection used last is handed out first: on a quiet server each request finds the
    # one whose memory is still warm, rather than the one idle longest. Threads waiting for one
    # get them in the order they came (polygenix/pool.py).
    pool: dict[str, Any] = {"pool_use_lifo": True}
    if url.get_dialect().get_pool_class(url) is QueuePool:  # not SQLite in memory
        pool["poolclass"] = FairQueuePool
    if url.get_backend_name() == "sqlite":
        return pool  # a file: no server to restart, so no connection goes stale
    connect, statement = config["DB_CONNECT_TIMEOUT"], config["DB_STATEMENT_TIMEOUT"]
    server_options = (
        f"-c statement_timeout={round(statement * 1000)} "
        f"-c idle_in_transaction_session_timeout={round(config['DB_IDLE_TIMEOUT'] * 1000)}"
    )
    if url.query.get("options"):  # the URL's own (a search_path, say) are kept
        server_options = f"{url.query['options']} {server_options}"
    return pool | {
        # A connection the server dropped (restart, idle timeout) is replaced, not used (see
        # `_checked`, which pings only connections that sat idle: pool_pre_ping pings each time);
        # with LIFO, connections left idle past the server's timeout are the ones it drops.
        "pool_size": config["DB_POOL_SIZE"],
        "max_overflow": config["DB_MAX_OVERFLOW"],
        "pool_recycle": config["DB_POOL_RECYCLE"],
        "pool_timeout": config["DB_POOL_TIMEOUT"],
        "connect_args": {
            # libpq counts whole seconds, at least 2.
            "connect_timeout": max(2, round(connect)),
            "options": server_options,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": round((statement + connect) * 1000),
            # A query the server would end at its statement timeout has had its chance.
            ANSWER_TIMEOUT: statement + connect,
        },
    }


def alone(session) -> bool:
    """Send the ORM `session`'s next statement as a transaction of its own where the database
    allows it: on PostgreSQL, with no transaction begun, in autocommit (no BEGIN nor COMMIT
    round trip, and the rows it locks let go as it ends). Whether it does. For a caller whose
    transaction is that one statement.

    Every statement of the session is so sent until its transaction ends (a commit costs no
    round trip then): a caller with more to send ends it first (`ended`). The connection goes
    back to the pool with its isolation level reset (SQLAlchemy undoes an `isolation_level`
    execution option as the connection is given back), so the next transaction, whichever
    request's, begins with `BEGIN` as usual."""
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        return False
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


def in_autocommit(session) -> bool:
    """Whether the session's transaction is one `alone` began: statements sent one by one."""
    if not session.in_transaction():
        return False
    options = session.connection().get_execution_options()
    return options.get("isolation_level") == "AUTOCOMMIT"


def ended(session) -> None:
    """End the session's transaction if `alone` began it (no round trip: nothing is open on
    the server), so that what follows, a write that must be atomic, begins one of its own."""
    if in_autocommit(session):
        session.commit()


@contextmanager
def statements_alone(session, *, reads_follow: bool = False) -> Iterator[None]:
    """The block's statements each a transaction of its own where the database allows it (see
    `alone`), the session's transaction ended after it: for reads, or single-statement writes,
    that need nothing in common with what the request does next. With `reads_follow`, it is
    left open instead, for reads that the caller sends next and then ends (a turn's
    preparation, chat/prepare.py): they take no second pooled connection. A block that raises
    leaves the session's transaction rolled back, not in autocommit: whoever catches the error
    writes atomically again (a connection the database cut costs the rollback no round trip).
    Where the statements cannot be alone (SQLite, a transaction already begun) the block runs
    as it is, an error's rollback left to its handler."""
    if not alone(session):
        yield
        return
    try:
        yield
    except BaseException:
        session.rollback()
        raise
    if not reads_follow:
        ended(session)
