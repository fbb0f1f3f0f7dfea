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
from sqlalchemy import make_url, select

from polygenix.chat import turn as turns
from polygenix.chat.sweep import sweep_dead_streams
from polygenix.extensions import db
from polygenix.models import Message
from tests.fake_provider import openai_stream
from tests.helpers import (
    PASSWORD,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    FakeClock,
    ask,
    assert_envelope,
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


def messages(app):
    with app.app_context():
        return db.session.scalars(select(Message).order_by(Message.id)).all()


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
    database_proxy.set(PASS)
    wait_for(
        lambda: client.get("/api/ai_chat/history", headers=ada).status_code == 200,
        timeout=15,
        what="the database back",
    )


@needs_postgres
def test_a_connection_reset_mid_write_is_a_503_and_nothing_half_written(
    proxied_app, auth, database_proxy, fake
):
    """The database goes away while a turn's provider answers: the turn's store fails with a
    503 (never a 500), and no reply without its question, or question without its flag, is
    left behind."""
    client = proxied_app.test_client()
    ada = auth.register(client=client)
    fake.reply(delay=0.5)
    pending = ThreadPoolExecutor(1).submit(
        lambda: ask(proxied_app.test_client(), ada, "lost?", model="openai", session_id=4)
    )
    wait_for(lambda: fake.requests, what="the provider call")
    database_proxy.set(RESET)
    assert_envelope(pending.result(timeout=15), 503, "Database unavailable")
    database_proxy.set(PASS)
    wait_for(
        lambda: client.get("/api/ai_chat/history", headers=ada).status_code == 200,
        timeout=15,
        what="the database back",
    )
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
    assert ready.json == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
