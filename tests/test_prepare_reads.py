"""A turn's preparation reads without `BEGIN`/`COMMIT` on PostgreSQL (chat/prepare.py, the
caller's lookup in auth/): what a plain turn sends, counted; a budget's reservation still its own
transaction; the database failing, or the account deleted, on the way; and a connection given
back to the pool after autocommit reads that begins its next transaction as any other."""

import io
import json
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import create_engine, event, insert, select, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

from polygenix import database
from polygenix.extensions import db
from polygenix.models import BudgetReservation, ChatSession, User, UserLimits
from tests import images
from tests.helpers import (
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    ask,
    assert_envelope,
    bearer,
    before_statement,
    sessions,
    stream,
    warm_up,
)
from tests.tcp_proxy import PASS, RESET

on_postgresql = pytest.mark.skipif(not TEST_DATABASE_URL, reason="autocommit is PostgreSQL's")
# Without Redis a chat request's rate-limit hit is an upsert sent before the provider call.
HIT = 0 if TEST_REDIS_URL else 1


@dataclass
class Sent:
    """What an app sent the database: each statement, with whether its connection was in
    autocommit (no BEGIN nor COMMIT), and how many transactions it began on the server."""

    statements: list[tuple[str, bool]] = field(default_factory=list)
    begun: int = 0
    checkouts: int = 0  # connections taken from the pool

    @property
    def round_trips(self) -> int:
        """A statement each, and a BEGIN and a COMMIT (or ROLLBACK) a transaction."""
        return len(self.statements) + 2 * self.begun


@contextmanager
def sent(app):
    found = Sent()
    with app.app_context():
        engine = db.engine

    def statement(_conn, cursor, sql, *_args):
        connection = cursor.connection
        alone = bool(getattr(connection, "autocommit", False))
        idle = TEST_DATABASE_URL and connection.info.transaction_status == TransactionStatus.IDLE
        if not alone and idle:
            found.begun += 1  # psycopg sends BEGIN first
        found.statements.append((sql, alone))

    def checkout(*_args):
        found.checkouts += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine.pool, "checkout", checkout)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine.pool, "checkout", checkout)


def before_reading(app, table: str, action):
    """`action()` once, just before the first statement that reads `table` is sent."""
    return before_statement(
        app, lambda sql: sql.lstrip().startswith("SELECT") and f"FROM {table}" in sql, action
    )


def user_id(app, email="ada@example.com") -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def limit(app, **budgets) -> None:
    with app.app_context():
        db.session.add(UserLimits(user_id=user_id(app), **budgets))
        db.session.commit()


@on_postgresql
def test_a_plain_turn_reads_and_stores_with_no_begin_or_commit(app, client, auth):
    """The caller with their limits (one statement; then a session's rows), then the store's
    one statement: each its own transaction. With Redis a new session is 2 round trips, an
    existing one 5, a Responses continuation 3. A turn's views take one pooled connection for
    the lookup and the preparation, one for the store."""
    ada = auth.register()
    assert ask(client, ada, "first", session_id=1).status_code == 200
    warm_up(client, ada)
    key = client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"]
    assert ask(client, bearer(key), "warm the key's last use").status_code == 200
    v1 = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    calls = {
        "new session": (lambda h: ask(client, h, "new"), 2),
        "existing session": (lambda h: ask(client, h, "again", session_id=1), 5),
        "/v1 chat completion": (
            lambda h: client.post("/v1/chat/completions", headers=h, json=v1),
            2,
        ),
        "/v1 response": (
            lambda h: client.post(
                "/v1/responses", headers=h, json={"model": "echo", "input": "hi"}
            ),
            2,
        ),
        # The chain it continues, read by one statement of its own as well.
        "/v1 response continuation": (
            lambda h: client.post(
                "/v1/responses",
                headers=h,
                json={"model": "echo", "input": "on", "previous_response_id": previous},
            ),
            3,
        ),
    }
    previous = client.post("/v1/responses", headers=ada, json={"model": "echo", "input": "hi"})
    previous = previous.json["id"]
    for name, (call, trips) in calls.items():
        for headers in (ada, bearer(key)):
            with sent(app) as found:
                assert call(headers).status_code == 200, name
            assert found.checkouts == 2, name  # the lookup's and the preparation's, the store's
            assert found.begun == 0, (name, found.statements)
            assert all(alone for _, alone in found.statements), name
            assert found.round_trips == trips + HIT, (name, found.statements)
            first, *_, store = [sql for sql, _ in found.statements]
            assert first.startswith("SELECT") and ("FROM users" in first or "api_keys" in first)
            # The caller's limits come with the caller, not by a query of their own.
            assert "user_limits" in first
            assert not [s for s, _ in found.statements if s.startswith("SELECT user_limits")]
            assert store.startswith("WITH"), name
    # An SDK's call claims its retry key between the lookup and the preparation, on their
    # connection, by one statement sent alone as well.
    sdk = {**ada, "X-Stainless-Retry-Count": "0"}
    with sent(app) as found:
        answer = client.post("/v1/responses", headers=sdk, json={"model": "echo", "input": "o"})
        assert answer.status_code == 200
    assert found.checkouts == 2 and found.begun == 0, found.statements
    assert found.round_trips == 3 + HIT, found.statements


@on_postgresql
def test_a_budgets_reservation_is_still_a_transaction_of_its_own(make_app, provider_config, auth):
    """The reads before it alone; the user's row locked, the reservation inserted and the
    budget checked between one BEGIN and its COMMIT."""
    app = make_app(provider_config)
    client = app.test_client()
    ada = auth.register(client=client)
    limit(app, token_budget="100000/day")
    warm_up(client, ada)
    assert ask(client, ada, "warm", model="openai").status_code == 200
    with sent(app) as found:
        assert ask(client, ada, "budgeted", model="openai").status_code == 200
    statements = found.statements
    lock = next(i for i, (sql, _) in enumerate(statements) if "FOR" in sql and "users" in sql)
    assert all(alone for _, alone in statements[:lock])  # the caller, the limits (and the hit)
    reservation = [sql.split()[0] for sql, alone in statements[lock:] if not alone]
    assert reservation[:3] == ["SELECT", "INSERT", "SELECT"]
    assert "INSERT INTO budget_reservations" in statements[lock + 1][0]
    # The reservation's; the store is one statement sent alone, its release a part of it.
    assert found.begun == 1
    store, alone = statements[-1]
    assert alone and store.startswith("WITH") and "DELETE FROM budget_reservations" in store
    with app.app_context():
        assert db.session.scalars(select(BudgetReservation)).all() == []


@on_postgresql
def test_the_database_going_away_during_the_preparation_is_a_503(
    make_app, provider_config, auth, database_proxy
):
    quick = {"DB_CONNECT_TIMEOUT": 2, "DB_STATEMENT_TIMEOUT": 1, "DB_POOL_TIMEOUT": 1}
    app = make_app(provider_config | quick | {"SQLALCHEMY_DATABASE_URI": database_proxy.url})
    client = app.test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "first", session_id=1).status_code == 200
    # After the caller was read, before their session is: mid-preparation.
    with before_reading(app, "chat_sessions", lambda: database_proxy.set(RESET)) as done:
        response = ask(client, ada, "lost in preparation", session_id=1)
    assert done
    assert_envelope(response, 503, "Database unavailable")
    assert response.headers["Retry-After"] == "1"
    database_proxy.set(PASS)
    answered = ask(client, ada, "back", session_id=1)
    assert answered.status_code == 200, answered.json
    assert sessions(client, ada) == [(1, ["first", "Echo: first", "back", "Echo: back"])]


@pytest.mark.parametrize("settings", [{}, {"TOKEN_BUDGET": "9999/day"}])
def test_an_account_deleted_during_the_preparation_stores_nothing(make_app, auth, settings):
    """The caller read, then their account deleted before the preparation reads on: the turn
    stores nothing and answers 401, as the next request with the token does. With a budget its
    reservation finds no user; without one the store finds no account to write to, as when the
    account goes while the provider answers."""
    app = make_app(settings)
    client = app.test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "first", session_id=1).status_code == 200
    ada_id = user_id(app)
    other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])

    def delete_account():
        with other.begin() as connection:
            connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": ada_id})

    try:
        with before_reading(app, "chat_sessions", delete_account) as done:
            response = ask(client, ada, "gone meanwhile", session_id=1)
    finally:
        other.dispose()
    assert done
    assert_envelope(response, 401, "The account no longer exists")
    with app.app_context():
        assert db.session.scalars(select(ChatSession)).all() == []
    assert_envelope(ask(client, ada, "and after"), 401)


@contextmanager
def deleted_before_reading(app, table: str, what: str, number: int = 1):
    """The caller's account (`what` "account") or their session `number` ("session") deleted
    by another connection just before the app first reads `table`."""
    other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    ada_id = user_id(app)
    if what == "account":
        statement, params = "DELETE FROM users WHERE id = :id", {"id": ada_id}
    else:
        statement = "DELETE FROM chat_sessions WHERE user_id = :id AND number = :n"
        params = {"id": ada_id, "n": number}

    def delete():
        with other.begin() as connection:
            connection.execute(text(statement), params)

    try:
        with before_reading(app, table, delete) as done:
            yield done
    finally:
        other.dispose()


GONE = {"account": (401, "The account no longer exists"), "session": (404, "Chat session")}


@pytest.mark.parametrize("streamed", [False, True])
def test_a_turns_image_gone_with_its_account_meanwhile_is_a_401(app, client, auth, streamed):
    """The caller authenticated, then their account deleted (their attachments with it) before
    the turn's image is read: the 401 the account's token gets from then on, not an image
    missing, and nothing stored."""
    ada = auth.register()
    attachment = images.upload(client, ada, images.png())
    turn = stream if streamed else ask
    args = ("echo", "look") if streamed else ("look",)
    with deleted_before_reading(app, "attachments", "account") as done:
        response = turn(client, ada, *args, attachment_ids=[attachment])
    assert done
    assert_envelope(response, *GONE["account"])
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_envelope(ask(client, ada, "and after"), 401)
    with app.app_context():
        assert db.session.scalars(select(ChatSession)).all() == []


@pytest.mark.parametrize("what", ["account", "session"])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_regenerate_whose_session_went_between_its_reads(app, client, auth, what, streamed):
    """A regenerate read its session, then (the deletion committed meanwhile; each read its own
    snapshot) finds no question in it: the session is gone, a 404, or the account with it, a
    401; not a session with nothing to answer again (422)."""
    ada = auth.register()
    assert ask(client, ada, "first", session_id=1).status_code == 200
    with deleted_before_reading(app, "messages", what) as done:
        response = client.post("/api/ai_chat/1/regenerate", headers=ada, json={"stream": streamed})
    assert done
    assert_envelope(response, *GONE[what])


@pytest.mark.parametrize("what", ["account", "session"])
def test_an_edit_whose_session_went_between_its_reads(app, client, auth, what):
    """An edit read its session, then not its message: 404, or 401 if the account went."""
    ada = auth.register()
    assert ask(client, ada, "first", session_id=1).status_code == 200
    question = client.get("/api/ai_chat/1", headers=ada).json["messages"][0]["id"]
    url = f"/api/ai_chat/1/messages/{question}"
    with deleted_before_reading(app, "messages", what) as done:
        response = client.put(url, headers=ada, json={"content": "again"})
    assert done
    status, message = GONE[what]
    assert_envelope(response, status, message if what == "account" else "Message not found")


def test_a_regenerate_of_a_session_with_no_question_of_the_users_is_a_422(app, client, auth):
    """A session that is there with no question in it (made by a restore, say): nothing to
    answer again, whatever the second look finds."""
    ada = auth.register()
    with app.app_context():
        db.session.execute(insert(ChatSession).values(user_id=user_id(app), title="t", number=3))
        db.session.commit()
    response = client.post("/api/ai_chat/3/regenerate", headers=ada, json={})
    body = assert_envelope(response, 422, "The session has no message of yours to answer again.")
    assert body["errors"] == {"json": {"chat_id": [body["message"].removeprefix("chat_id: ")]}}


def test_a_deleted_accounts_token_is_a_401_read_once(app, client, auth):
    ada = auth.register()
    warm_up(client, ada)
    ada_id = user_id(app)
    with app.app_context():
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": ada_id})
        db.session.commit()
    with sent(app) as found:
        assert_envelope(ask(client, ada, "who?"), 401)
    assert len([sql for sql, _ in found.statements if "FROM users" in sql]) == 1


class Upload(io.BytesIO):
    """A request body that says whether it was read to its end."""

    def __init__(self, body: bytes):
        super().__init__(body)
        self.size = len(body)

    @property
    def done(self) -> bool:
        return self.tell() == self.size


@on_postgresql
def test_a_turns_body_is_read_before_its_connection_is_taken(app, client, auth):
    """The connection kept from the caller's lookup on is taken after the body is read: a slow
    upload holds no pooled connection."""
    ada = auth.register()
    warm_up(client, ada)
    turns = [
        ("/api/ai_chat/request", {"content": "hi", "model": "echo"}),
        (
            "/v1/chat/completions",
            {"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("/v1/responses", {"model": "echo", "input": "hi"}),
    ]
    with app.app_context():
        pool = db.engine.pool
    for path, body in turns:
        upload, read = Upload(json.dumps(body).encode()), []

        def checkout(*_args, upload=upload, read=read):
            read.append(upload.done)

        event.listen(pool, "checkout", checkout)
        try:
            answer = client.post(
                path,
                headers={**ada, "Content-Type": "application/json"},
                input_stream=upload,
                content_length=upload.size,
            )
        finally:
            event.remove(pool, "checkout", checkout)
        assert answer.status_code == 200, (path, answer.json)
        assert read and all(read), path


@pytest.mark.parametrize("pool", [{"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 0}])
def test_a_connection_back_from_autocommit_reads_writes_atomically(make_app, auth, pool):
    """One pooled connection: after turns whose preparation read in autocommit (one answered,
    one refused on the way, one whose model is unknown, two whose bodies are refused after the
    caller's lookup), a transaction of two inserts whose
    second fails leaves nothing of the first."""
    app = make_app(pool)
    client = app.test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, "kept", session_id=1).status_code == 200
    assert client.post("/api/ai_chat/7/regenerate", headers=ada, json={}).status_code == 404
    assert ask(client, ada, "which?", model="no-such-model").status_code == 422
    # Refused after the caller's lookup, before any preparation read: its autocommit ends too.
    assert client.post("/api/ai_chat/request", headers=ada, json={"content": 7}).status_code == 422
    v1 = client.post("/v1/chat/completions", headers=ada, json={"model": "echo", "messages": 7})
    assert v1.status_code == 400
    row = {"user_id": user_id(app), "title": "half", "number": 2}
    with app.app_context():
        connection = db.session.connection()
        assert connection.get_isolation_level() != "AUTOCOMMIT"
        if TEST_DATABASE_URL:
            assert connection.connection.driver_connection.autocommit is False
        db.session.execute(insert(ChatSession).values(row))
        with pytest.raises(IntegrityError):
            db.session.execute(insert(ChatSession).values(row))  # the same number again
        db.session.rollback()
        numbers = db.session.scalars(select(ChatSession.number)).all()
    assert numbers == [1]
    assert sessions(client, ada) == [(1, ["kept", "Echo: kept"])]


@pytest.mark.parametrize("pool", [{"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 0}])
@on_postgresql
def test_statements_alone_that_raise_leave_no_autocommit_behind(make_app, pool):
    """A block of statements sent alone that fails (the database refusing one) leaves the
    session rolled back: what it writes next is one transaction again, on the one connection."""
    app = make_app(pool)
    with app.app_context():
        with pytest.raises(ProgrammingError), database.statements_alone(db.session()):
            db.session.execute(text("SELECT no_such_column FROM users"))
        assert not database.in_autocommit(db.session())
        db.session.execute(text("CREATE TEMPORARY TABLE kept (n int)"))
        db.session.execute(text("INSERT INTO kept VALUES (1)"))
        db.session.rollback()  # a transaction: nothing of it stays
        assert db.session.execute(text("SELECT to_regclass('kept')")).scalar() is None
