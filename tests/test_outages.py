"""The database and Redis refusing, resetting or going silent, through a TCP proxy: every request
ends in a documented status within a bounded time (never a 500, never a hang), and nothing is
half written.

The database outages need PostgreSQL (a SQLite file cannot be put behind a proxy); the Redis ones
need Redis. CI runs both.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, event, make_url, text

from polygenix.chat import turn as turns
from polygenix.chat.sweep import sweep_dead_streams
from polygenix.extensions import db
from polygenix.limits import REDIS_RETRY_SECONDS
from tests.fake_provider import openai_stream
from tests.helpers import (
    PASSWORD,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    FakeClock,
    ask,
    assert_envelope,
    bearer,
    before_statement,
    busy_password_slots,
    messages,
    read_events,
    stream,
    wait_for,
)
from tests.tcp_proxy import PASS, REFUSE, RESET, SILENT, TCPProxy

needs_postgres = pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs TEST_DATABASE_URL")
needs_redis = pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL")

# Short timeouts, so that a silent database is given up on in about three seconds.
QUICK = {"DB_CONNECT_TIMEOUT": 2, "DB_STATEMENT_TIMEOUT": 1, "DB_POOL_TIMEOUT": 1}


@pytest.fixture
def proxied_app(make_app, provider_config, database_proxy):
    """An app whose database connections all go through the proxy."""
    return make_app(provider_config | QUICK | {"SQLALCHEMY_DATABASE_URI": database_proxy.url})


def database_back(database_proxy, client, headers):
    """The database back (the proxy passing again): the caller served again once the
    connections the outage cut are given up on."""
    database_proxy.set(PASS)
    wait_for(
        lambda: client.get("/api/ai_chat/history", headers=headers).status_code == 200,
        timeout=15,
        what="the database back",
    )


def lose_a_turn(app, headers, database_proxy, fake):
    """A turn whose provider answers while the database's connections are cut: it is a 503;
    then the database comes back."""
    fake.reply(delay=0.5)
    pending = ThreadPoolExecutor(1).submit(
        lambda: ask(app.test_client(), headers, "lost?", model="openai", session_id=4)
    )
    wait_for(lambda: fake.requests, what="the provider call")
    database_proxy.set(RESET)
    assert_envelope(pending.result(timeout=15), 503, "Database unavailable")
    database_back(database_proxy, app.test_client(), headers)


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@needs_postgres
@pytest.mark.parametrize("mode", [REFUSE, RESET])
def test_a_database_that_refuses_or_resets_is_a_503(proxied_app, auth, database_proxy, mode):
    client = proxied_app.test_client()
    ada = auth.register(client=client)
    database_proxy.set(RESET)  # the database goes down: its open connections are cut...
    database_proxy.set(mode)  # ...and new ones refused, or cut at once
    for call in (
        lambda: client.get("/api/ai_chat/history", headers=ada),
        lambda: ask(client, ada, "hello"),
        lambda: client.post("/api/auth/login", data={"username": "a@b.co", "password": "x"}),
    ):
        response, seconds = timed(call)
        assert_envelope(response, 503, "Database unavailable")
        assert response.headers["Retry-After"] == "1"
        assert seconds < 5
    database_proxy.set(PASS)
    assert client.get("/api/ai_chat/history", headers=ada).status_code == 200


@needs_postgres
@pytest.mark.slow
def test_a_silent_database_is_given_up_on_not_waited_for(proxied_app, auth, database_proxy):
    """A black hole (a firewall dropping the connection's state): pooled connections and new
    ones alike get a 503 after the statement and connect timeouts, and /readyz answers 503
    within two seconds."""
    client = proxied_app.test_client()
    ada = auth.register(client=client)
    database_proxy.set(SILENT)
    response, seconds = timed(lambda: client.get("/api/ai_chat/history", headers=ada))
    assert_envelope(response, 503, "Database unavailable")
    assert seconds < 10
    response, seconds = timed(lambda: client.get("/readyz"))
    assert_envelope(response, 503, "database unavailable")
    assert seconds < 2
    database_back(database_proxy, client, ada)


@needs_postgres
def test_a_connection_reset_mid_write_is_a_503_and_nothing_half_written(
    proxied_app, auth, database_proxy, fake
):
    """The database goes away while a turn's provider answers: the turn's store fails with a
    503 (never a 500), and no reply without its question, or question without its flag, is
    left behind."""
    client = proxied_app.test_client()
    ada = auth.register(client=client)
    lose_a_turn(proxied_app, ada, database_proxy, fake)
    assert messages(proxied_app) == []


@needs_postgres
def test_no_free_pooled_connection_is_a_503(make_app, provider_config, auth, fake):
    pool = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3}
    app = make_app(provider_config | {"SQLALCHEMY_ENGINE_OPTIONS": pool})
    client = app.test_client()
    ada = auth.register(client=client)
    with app.app_context():
        held = db.engine.connect()  # the pool's only connection, checked out
        try:
            assert_envelope(client.get("/api/ai_chat/history", headers=ada), 503)
        finally:
            held.close()
    assert client.get("/api/ai_chat/history", headers=ada).status_code == 200


@needs_postgres
def test_a_database_failure_at_a_streams_end_is_an_error_event_and_swept_later(
    make_app, provider_config, auth, fake, database_proxy
):
    """The stream's last commit fails: the client gets `event: error` (no exception leaves
    the stream), and the reply saved so far is flagged incomplete by the sweep once its lease
    runs out."""
    clock = FakeClock()
    settings = provider_config | QUICK | {"SQLALCHEMY_DATABASE_URI": database_proxy.url}
    app = make_app(settings | {"CLOCK": clock, "STREAM_SAVE_INTERVAL": 0.01})
    client = app.test_client()
    ada = auth.register(client=client)
    fake.reply(chunks=openai_stream(["one ", "two ", "three ", "four"], "gpt-4.1-mini"), gap=0.3)

    def cut_when_saved():
        # The database goes away once the first text is saved, before the stream ends.
        for message in messages(app):
            if message.is_bot and message.content:
                database_proxy.set(RESET)
                return True
        return False

    pending = ThreadPoolExecutor(1).submit(
        lambda: read_events(
            stream(app.test_client(), ada, "openai", session_id=2).get_data(as_text=True)
        )
    )
    wait_for(cut_when_saved, timeout=10, what="the first save")
    events = pending.result(timeout=30)
    assert events[0][0] == "start"
    assert events[-1][0] == "error" and events[-1][1]["code"] == 503
    database_proxy.set(PASS)
    clock.advance(3600)  # the reply's lease runs out
    with app.app_context():
        wait_for(lambda: _sweeps(), timeout=15, what="the database back")
    [question, reply] = messages(app)
    assert question.content == "Stream it" and question.error is None
    assert reply.incomplete and reply.error == turns.INTERRUPTED
    assert reply.content.startswith("one ") and reply.lease_until is None


def cut_before(app, proxy, fragment: str):
    """The database's connections reset just before the app sends its first statement that
    contains `fragment`: an outage in the middle of a request, on the connection it holds."""
    return before_statement(app, fragment, lambda: proxy.set(RESET))


@needs_postgres
@pytest.mark.parametrize(
    ("credential", "lookup"), [("token", "FROM users"), ("key", "FROM api_keys")]
)
def test_a_database_that_resets_during_the_callers_lookup_is_a_503(
    proxied_app, auth, database_proxy, credential, lookup
):
    """The caller's lookup (its statements sent alone, auth/) loses its connection: rolling the
    lookup back on a connection the pool has invalidated is no error of its own, and the
    request is the outage's 503; the database back, the next request is served."""
    client = proxied_app.test_client()
    ada = auth.register(client=client)
    if credential == "key":
        ada = bearer(client.post("/api/keys", headers=ada, json={"name": "k"}).json["key"])
    with cut_before(proxied_app, database_proxy, lookup) as cut:
        response, seconds = timed(lambda: client.get("/api/ai_chat/history", headers=ada))
    assert cut
    assert_envelope(response, 503, "Database unavailable")
    assert response.headers["Retry-After"] == "1"
    assert seconds < 5
    database_back(database_proxy, client, ada)


@needs_postgres
def test_a_database_that_resets_as_a_refused_requests_hit_is_counted_answers_the_refusal(
    make_app, provider_config, auth, database_proxy
):
    """Without Redis a chat request's rate-limit hit is counted as the request ends when it
    committed nothing (a 404 here); the database cut just then, the hit goes uncounted (rolled
    back on the invalidated connection) and the refusal is answered as it was, never a 500."""
    settings = provider_config | QUICK | {"REDIS_URL": None, "CHAT_RATE_LIMIT": "50/minute"}
    app = make_app(settings | {"SQLALCHEMY_DATABASE_URI": database_proxy.url})
    client = app.test_client()
    ada = auth.register(client=client)
    with cut_before(app, database_proxy, "INSERT INTO rate_limit_counts") as cut:
        response = client.post("/api/ai_chat/7/regenerate", headers=ada, json={})
    assert cut
    assert_envelope(response, 404, "Chat session not found")
    database_back(database_proxy, client, ada)


@needs_postgres
def test_a_database_that_resets_as_an_uncounted_hit_is_rolled_back_answers_the_refusal(
    make_app, provider_config, auth, database_proxy, postgres_url
):
    """The refused request's hit, counted as it ends, waits on a lock past the statement
    timeout (the table held elsewhere): its transaction is rolled back on a connection still
    good, and the database resets just then. The rollback's failure is no error of the
    request's: the refusal is answered as it was, never a 500."""
    settings = provider_config | QUICK | {"REDIS_URL": None, "CHAT_RATE_LIMIT": "50/minute"}
    app = make_app(settings | {"SQLALCHEMY_DATABASE_URI": database_proxy.url})
    client = app.test_client()
    ada = auth.register(client=client)
    with app.app_context():
        engine = db.engine
    cut: list[str] = []

    def hit(_conn, _cursor, sql, *_args):
        if "INSERT INTO rate_limit_counts" in sql:
            cut.append("hit")

    def rollback(_conn):
        if cut == ["hit"]:  # the failed hit's transaction, rolled back
            cut.append("rollback")
            database_proxy.set(RESET)

    holder = create_engine(postgres_url)
    try:
        with holder.connect() as holding:
            holding.execute(text("LOCK TABLE rate_limit_counts IN EXCLUSIVE MODE"))
            event.listen(engine, "before_cursor_execute", hit)
            event.listen(engine, "rollback", rollback)
            try:
                response = client.post("/api/ai_chat/7/regenerate", headers=ada, json={})
            finally:
                event.remove(engine, "before_cursor_execute", hit)
                event.remove(engine, "rollback", rollback)
    finally:
        holder.dispose()
    assert cut == ["hit", "rollback"]
    assert_envelope(response, 404, "Chat session not found")
    database_back(database_proxy, client, ada)


def test_a_writer_whose_connection_is_invalidated_rolls_back_and_lets_the_next_one_write(
    app, client, auth
):
    """A transaction that wrote, its connection then invalidated (the database gone under it):
    rolling it back is no error, and on SQLite the process's write turn (database.py) went with
    the connection, so the next request writes at once rather than after WRITE_TURN_TIMEOUT."""
    ada = auth.register(client=client)
    with app.app_context():
        db.session.execute(text("UPDATE users SET name = name"))  # SQLite: the write turn taken
        db.session.connection().invalidate()
        db.session.rollback()
    response, seconds = timed(lambda: ask(client, ada, "next"))
    assert response.status_code == 200, response.json
    assert seconds < 5


def _sweeps() -> bool:
    try:
        return sweep_dead_streams() >= 0
    except Exception:
        db.session.rollback()
        return False


# --- Redis ---------------------------------------------------------------------------------


@pytest.fixture
def redis_proxy():
    url = make_url(TEST_REDIS_URL.replace("redis://", "postgresql://"))
    proxy = TCPProxy(url.host, url.port or 6379)
    proxy.url = f"redis://127.0.0.1:{proxy.port}/{url.database or 0}"
    yield proxy
    proxy.close()


def login(client, ip="10.0.0.1"):
    return client.post(
        "/api/auth/login",
        data={"username": "ada@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": ip},
    )


@needs_redis
@pytest.mark.parametrize("mode", [REFUSE, RESET, SILENT])
def test_redis_down_keeps_the_service_up_counting_limits_per_process(
    make_app, auth, redis_proxy, caplog, mode
):
    app = make_app({"REDIS_URL": redis_proxy.url, "LOGIN_RATE_LIMIT": "3/minute"})
    client = app.test_client()
    ada = auth.register(client=client)
    caplog.set_level(logging.WARNING, "polygenix")
    if mode != SILENT:
        redis_proxy.set(RESET)  # Redis goes down: its open connections are cut
    redis_proxy.set(mode)
    # Authentication needs no Redis; rate limits count in this process meanwhile.
    assert client.get("/api/auth/me", headers=ada).status_code == 200
    statuses = [login(client).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert "rate limits are counted per process" in caplog.text
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'polygenix_redis_fallbacks_total{use="rate_limit"}' in metrics
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "degraded"
    redis_proxy.set(PASS)
    ready = client.get("/readyz")
    assert ready.json == {
        "status": "degraded",  # until the limits are counted in Redis again
        "checks": {"database": "ok", "redis": "ok", "rate_limits": "per_process"},
    }


def login_as(client, n):
    """A limited request from a client and for an account no other request uses."""
    return client.post(
        "/api/auth/login",
        data={"username": f"user{n}@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": f"10.1.{n // 250}.{n % 250}"},
    )


@needs_redis
def test_limits_are_shared_again_within_the_retry_interval_under_steady_traffic(
    make_app, redis_proxy
):
    """Two workers, Redis refusing then back, a limited request every second on each: within
    REDIS_RETRY_SECONDS of Redis answering, both count in Redis again (steady traffic does not
    put the retry off), and /readyz says degraded until then."""
    clock = FakeClock()
    settings = {"REDIS_URL": redis_proxy.url, "LOGIN_RATE_LIMIT": "6/hour", "CLOCK": clock}
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    requests = iter(range(10_000))
    redis_proxy.set(RESET)
    redis_proxy.set(REFUSE)
    for client in (first, second):
        assert login_as(client, next(requests)).status_code == 401
        assert client.get("/readyz").json == {
            "status": "degraded",
            "checks": {"database": "ok", "redis": "unavailable", "rate_limits": "per_process"},
        }
    redis_proxy.set(PASS)
    # Redis answers, but no retry is due yet: still counted per process, and said so.
    assert first.get("/readyz").json == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "ok", "rate_limits": "per_process"},
    }
    for _ in range(REDIS_RETRY_SECONDS):
        clock.advance(1)
        for client in (first, second):
            assert login_as(client, next(requests)).status_code == 401
    # One count again: three requests from one address on each worker, and the seventh is over.
    shared = next(requests)
    for client in (first, second, first, second, first, second):
        assert login_as(client, shared).status_code == 401
    assert login_as(first, shared).status_code == 429
    assert login_as(second, shared).status_code == 429
    for client in (first, second):
        assert client.get("/readyz").json == {
            "status": "ready",
            "checks": {"database": "ok", "redis": "ok", "rate_limits": "ok"},
        }


@needs_redis
def test_readyz_tries_redis_again_on_schedule_with_no_other_traffic(make_app, redis_proxy):
    clock = FakeClock()
    client = make_app({"REDIS_URL": redis_proxy.url, "CLOCK": clock}).test_client()
    redis_proxy.set(RESET)
    redis_proxy.set(REFUSE)
    assert login_as(client, 1).status_code == 401  # counted in this process
    redis_proxy.set(PASS)
    assert client.get("/readyz").json["checks"]["rate_limits"] == "per_process"
    clock.advance(REDIS_RETRY_SECONDS)
    assert client.get("/readyz").json == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "rate_limits": "ok"},
    }


@needs_redis
def test_while_redis_is_down_a_failed_request_gives_its_hit_back_too(make_app, redis_proxy):
    settings = {"LOGIN_RATE_LIMIT": "2/minute", "PASSWORD_HASH_TIMEOUT": 0.01}
    app = make_app(settings | {"REDIS_URL": redis_proxy.url})
    client = app.test_client()
    redis_proxy.set(RESET)
    redis_proxy.set(REFUSE)
    with busy_password_slots(app):
        for _ in range(3):
            assert_envelope(login_as(client, 1), 503, "Too many password checks")
    # Counted in this process, and given back there.
    assert [login_as(client, 1).status_code for _ in range(3)] == [401, 401, 429]


@needs_postgres
@needs_redis
def test_a_turn_the_database_failed_gives_its_chat_hit_back(
    make_app, provider_config, auth, database_proxy, fake
):
    """The provider answered, then storing the turn failed (503): counted in Redis, the hit is
    given back, so the user's next requests have the whole limit."""
    settings = provider_config | QUICK | {"CHAT_RATE_LIMIT": "2/minute"}
    app = make_app(settings | {"SQLALCHEMY_DATABASE_URI": database_proxy.url})
    client = app.test_client()
    ada = auth.register(client=client)
    lose_a_turn(app, ada, database_proxy, fake)
    assert [ask(client, ada, model="openai").status_code for _ in range(3)] == [200, 200, 429]
