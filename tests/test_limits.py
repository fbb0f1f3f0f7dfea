"""Rate limits: per client IP and per account on login and sign-up, per account on every password
check, per user on chat requests; counted in Redis, or without it in the database."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from polygenix.extensions import db, redis_client
from polygenix.models import BudgetReservation, ChatSession, RateLimitCount
from tests.helpers import (
    TEST_REDIS_URL,
    FakeClock,
    ask,
    assert_envelope,
    busy_password_slots,
    counted_transactions,
    stream,
)


@pytest.fixture
def app(make_app):
    return make_app({"LOGIN_RATE_LIMIT": "3/minute", "CHAT_RATE_LIMIT": "2/minute"})


def login(client, username, ip="10.0.0.1"):
    return client.post(
        "/api/auth/login",
        data={"username": username, "password": "wrong password"},
        environ_base={"REMOTE_ADDR": ip},
    )


def assert_rate_limited(response):
    body = assert_envelope(response, 429, "Too many requests")
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    return body


def test_login_is_limited_per_client_ip(client):
    for n in range(3):
        assert login(client, f"user{n}@example.com").status_code == 401
    assert_rate_limited(login(client, "user9@example.com"))
    # Another client is not affected.
    assert login(client, "user9@example.com", ip="10.0.0.2").status_code == 401


def test_login_is_limited_per_account_from_any_ip(client):
    for n in range(3):
        assert login(client, "Victim@example.com", ip=f"10.0.1.{n}").status_code == 401
    assert_rate_limited(login(client, "victim@EXAMPLE.com", ip="10.0.1.99"))


def test_registration_is_limited(client):
    for n in range(3):
        response = client.post(
            "/api/user/create",
            json={"name": "x", "email": f"u{n}@example.com", "password": "long enough"},
        )
        assert response.status_code == 200
    response = client.post(
        "/api/auth/register",
        json={"name": "x", "email": "u0@example.com", "password": "long enough"},
    )
    assert response.status_code == 409  # register counts apart from /user/create...
    for _ in range(2):
        client.post(
            "/api/auth/register",
            json={"name": "x", "email": "u0@example.com", "password": "long enough"},
        )
    assert_rate_limited(  # ...but has the same limit, taken emails included
        client.post(
            "/api/auth/register",
            json={"name": "x", "email": "u0@example.com", "password": "long enough"},
        )
    )


def test_chat_requests_are_limited_per_user(client, auth):
    ada, bob = auth.register("ada@example.com"), auth.register("bob@example.com")
    body = {"content": "hi", "model": "echo"}
    for _ in range(2):
        assert client.post("/api/ai_chat/request", headers=ada, json=body).status_code == 200
    assert_rate_limited(client.post("/api/ai_chat/request", headers=ada, json=body))
    assert client.post("/api/ai_chat/request", headers=bob, json=body).status_code == 200
    # Reading is not limited.
    assert client.get("/api/ai_chat/history", headers=ada).status_code == 200


def test_every_limit_of_a_setting_counts(make_app):
    client = make_app({"LOGIN_RATE_LIMIT": "5/minute;2/hour"}).test_client()
    for n in range(2):
        assert login(client, f"user{n}@example.com").status_code == 401
    response = login(client, "user9@example.com")
    assert_envelope(response, 429, "Too many requests: at most 2 per 1 hour")
    assert 3500 < int(response.headers["Retry-After"]) <= 3600


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL")
def test_counting_starts_again_when_the_window_ends_in_redis(make_app):
    client = make_app({"LOGIN_RATE_LIMIT": "1/second"}).test_client()
    assert login(client, "a@example.com").status_code == 401
    assert login(client, "a@example.com").status_code == 429
    time.sleep(1.1)  # Redis expires the count on its own clock
    assert login(client, "a@example.com").status_code == 401


def test_counting_starts_again_when_the_window_ends_in_the_database(make_app):
    clock = FakeClock()
    app = make_app({"LOGIN_RATE_LIMIT": "1/minute", "REDIS_URL": None, "CLOCK": clock})
    client = app.test_client()
    assert login(client, "a@example.com").status_code == 401
    response = login(client, "a@example.com")
    assert_rate_limited(response)
    assert 59 <= int(response.headers["Retry-After"]) <= 60
    clock.advance(59)
    assert login(client, "a@example.com").status_code == 429
    clock.advance(1.5)
    assert login(client, "a@example.com").status_code == 401
    # Ended windows are swept from the table (at most once a minute, on a hit).
    clock.advance(3600)
    assert login(client, "b@example.com", ip="10.9.9.9").status_code == 401
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RateLimitCount)) == 2


def test_without_redis_workers_share_the_count_through_the_database(make_app):
    """Two apps over one database (two workers, or two hosts on PostgreSQL) count as one."""
    settings = {"LOGIN_RATE_LIMIT": "3/minute", "REDIS_URL": None}
    first, second = make_app(settings), make_app(settings)
    assert login(first.test_client(), "a@example.com").status_code == 401
    assert login(second.test_client(), "b@example.com").status_code == 401
    assert login(first.test_client(), "c@example.com").status_code == 401
    assert_rate_limited(login(second.test_client(), "d@example.com"))


@pytest.mark.parametrize("redis", [None, TEST_REDIS_URL] if TEST_REDIS_URL else [None])
def test_password_changes_and_logins_share_one_count_per_account(make_app, auth, redis):
    client = make_app({"LOGIN_RATE_LIMIT": "4/minute", "REDIS_URL": redis}).test_client()
    headers = auth.register(client=client)
    user_id = auth.user_id(headers, client=client)
    guess = {"password": "a brand new secret", "current_password": "a wrong guess"}
    for _ in range(2):
        response = client.put(f"/api/user/update/{user_id}", headers=headers, json=guess)
        assert_envelope(response, 422, "Current password is incorrect")
    assert login(client, "ada@example.com", ip="10.0.0.7").status_code == 401
    assert login(client, "ada@example.com", ip="10.0.0.8").status_code == 401
    # The fifth guess, on either route, is refused before any hashing.
    assert_rate_limited(client.put(f"/api/user/update/{user_id}", headers=headers, json=guess))
    assert_rate_limited(login(client, "ada@example.com", ip="10.0.0.9"))
    # A change of name needs no password and is not counted.
    assert (
        client.put(f"/api/user/update/{user_id}", headers=headers, json={"name": "A"}).status_code
        == 200
    )


def test_a_malformed_limit_stops_the_app_at_start(config):
    from config import ConfigError
    from polygenix import create_app

    with pytest.raises(ConfigError, match="CHAT_RATE_LIMIT must be a rate such as 10/minute"):
        create_app(config | {"CHAT_RATE_LIMIT": "thirty a minute"})


def test_limits_can_be_switched_off(make_app):
    client = make_app({"LOGIN_RATE_LIMIT": "1/minute", "RATELIMIT_ENABLED": False}).test_client()
    for _ in range(3):
        assert login(client, "a@example.com").status_code == 401


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL")
def test_counts_are_shared_in_redis_between_workers(make_app, config):
    settings = {"LOGIN_RATE_LIMIT": "3/minute", "REDIS_URL": TEST_REDIS_URL}
    first, second = make_app(settings), make_app(settings)
    assert login(first.test_client(), "a@example.com").status_code == 401
    assert login(second.test_client(), "b@example.com").status_code == 401
    assert login(first.test_client(), "c@example.com").status_code == 401
    assert_rate_limited(login(second.test_client(), "d@example.com"))
    with first.app_context():
        keys = redis_client().keys(f"*{config['RATELIMIT_KEY_PREFIX']}*")
    assert keys


@pytest.mark.parametrize("redis", [None, TEST_REDIS_URL] if TEST_REDIS_URL else [None])
def test_a_request_the_server_failed_gives_its_hits_back(make_app, redis):
    app = make_app(
        {"LOGIN_RATE_LIMIT": "2/minute", "PASSWORD_HASH_TIMEOUT": 0.01, "REDIS_URL": redis}
    )
    client = app.test_client()
    with busy_password_slots(app):
        for _ in range(3):
            assert_envelope(login(client, "ada@example.com"), 503, "Too many password checks")
    # Neither the address nor the account lost anything to the failures.
    assert login(client, "ada@example.com").status_code == 401
    assert login(client, "ada@example.com").status_code == 401
    assert_rate_limited(login(client, "ada@example.com"))


def test_a_providers_failure_keeps_its_hit(make_app, provider_config, auth, fake):
    """The provider was called: its failure (a 502 passed on) counts like a success."""
    client = make_app(provider_config | {"CHAT_RATE_LIMIT": "2/minute"}).test_client()
    ada = auth.register(client=client)
    body = {"model": "openai", "messages": [{"role": "user", "content": "hi"}]}
    for call in (
        lambda: ask(client, ada, model="openai"),
        lambda: client.post("/v1/chat/completions", headers=ada, json=body),
    ):
        fake.reply(status=500, times=20)
        assert call().status_code == 502
        fake.reset()
        assert call().status_code == 200
        assert call().status_code == 429


# --- a chat request's hit, counted in the database in the request's own first commit ------------


def chat_calls(client, headers):
    """Each chat endpoint that calls a provider, as a call: its response."""
    v1 = {"model": "openai", "messages": [{"role": "user", "content": "hi"}]}
    return {
        "native": lambda: ask(client, headers, model="openai"),
        "native streamed": lambda: stream(client, headers, "openai"),
        "/v1 chat": lambda: client.post("/v1/chat/completions", headers=headers, json=v1),
        "/v1 chat streamed": lambda: client.post(
            "/v1/chat/completions", headers=headers, json=v1 | {"stream": True}
        ),
        "/v1 responses": lambda: client.post(
            "/v1/responses", headers=headers, json={"model": "openai", "input": "hi"}
        ),
        "/v1 embeddings": lambda: client.post(
            "/v1/embeddings",
            headers=headers,
            json={"model": "openai/text-embedding-3-small", "input": "hi"},
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "native",
        "native streamed",
        "/v1 chat",
        "/v1 chat streamed",
        "/v1 responses",
        "/v1 embeddings",
    ],
)
def test_a_chat_limit_counted_in_the_database_refuses_before_the_provider_is_called(
    make_app, provider_config, auth, fake, kind
):
    app = make_app(provider_config | {"CHAT_RATE_LIMIT": "2/minute", "REDIS_URL": None})
    client = app.test_client()
    ada = auth.register(client=client)
    call = chat_calls(client, ada)[kind]
    for _ in range(2):
        response = call()
        assert response.status_code == 200, response.data[:300]
        response.get_data()  # a stream, read to its end
    fake.reset()
    refused = call()
    assert refused.status_code == 429  # in the envelope of its API (OpenAI's on /v1)
    assert "Too many requests" in refused.get_data(as_text=True)
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert fake.requests == []  # refused before any call
    with app.app_context():  # and nothing of the refused request was kept
        assert db.session.scalar(select(func.count()).select_from(BudgetReservation)) == 0
        sessions = db.session.scalar(select(func.count()).select_from(ChatSession))
    assert sessions == (0 if kind == "/v1 embeddings" else 2)


def test_a_chat_request_refused_before_its_first_commit_still_counts(make_app, auth):
    """An unknown model is a 422 before the turn's first commit: the hit is counted as the
    request ends, as every hit was."""
    client = make_app({"CHAT_RATE_LIMIT": "2/minute", "REDIS_URL": None}).test_client()
    ada = auth.register(client=client)
    assert ask(client, ada, model="no-such-model").status_code == 422
    assert ask(client, ada).status_code == 200
    assert_rate_limited(ask(client, ada))


def test_a_chat_turn_counts_its_hit_in_its_own_transaction(make_app, auth):
    """Without Redis, a turn's hit is one more statement of the transaction that prepares it,
    never a transaction of its own: one upsert, committed with the preparation."""
    app = make_app({"CHAT_RATE_LIMIT": "100/minute", "REDIS_URL": None})
    client = app.test_client()
    ada = auth.register(client=client)
    assert ask(client, ada).status_code == 200
    with counted_transactions(app) as transactions:
        assert ask(client, ada, session_id=1).status_code == 200
    hits = [t for t in transactions if any("rate_limit_counts" in s for s in t)]
    assert len(hits) == 1 and len(hits[0]) > 1, transactions
    # The preparation with the hit, then the stored turn; on PostgreSQL the caller's lookup
    # is sent alone on the preparation's connection (autocommit, as its reads and the hit).
    assert len(transactions) == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_chat_requests_past_a_database_limit_are_refused_exactly(
    make_app, auth, workers
):
    """12 requests at once, from one or two workers (apps) sharing the database, against a
    limit of 5: exactly 5 are answered."""
    settings = {"CHAT_RATE_LIMIT": "5/minute", "REDIS_URL": None}
    apps = [make_app(settings) for _ in range(workers)]
    ada = auth.register(client=apps[0].test_client())
    go = threading.Barrier(12)

    def call(n):
        client = apps[n % workers].test_client()
        go.wait()
        return ask(client, ada, f"q{n}").status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(call, range(12)))
    assert statuses == [200] * 5 + [429] * 7
