"""Rate limits: per client IP and per account on login and sign-up, per account on every password
check, per user on chat requests; counted in Redis, or without it in the database."""

import time

import pytest
from sqlalchemy import func, select

from polygenix.extensions import db, redis_client
from polygenix.models import RateLimitCount
from tests.helpers import TEST_REDIS_URL, FakeClock, ask, assert_envelope, busy_password_slots


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
