"""Fixtures: apps over a real database (SQLite files, or PostgreSQL when TEST_DATABASE_URL is set).

With TEST_DATABASE_URL, the run gets a schema of its own (dropped at the end) and every test starts
from empty tables; with TEST_REDIS_URL, apps keep their shared state in that Redis.
"""

import os

import pytest
import redis
from sqlalchemy import create_engine, make_url

from polygenix import create_app, health
from polygenix.extensions import db
from polygenix.user.service import create_user
from tests.browser import browser, site, tabs  # noqa: F401  (fixtures)
from tests.helpers import (
    PASSWORD,
    REDIS_TEST_PREFIX,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    bearer,
    scratch_schema,
)
from tests.openai_sdk import bob_sdk, key, sdk, server  # noqa: F401  (fixtures)
from tests.provider_setup import fake, provider_app, provider_config  # noqa: F401  (fixtures)
from tests.tcp_proxy import TCPProxy

# Real hashing, at a cost that keeps a few hundred logins quick.
FAST_HASH = "pbkdf2:sha256:1000"


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL URL whose search_path is this run's own schema, or None (SQLite)."""
    if not TEST_DATABASE_URL:
        yield None
        return
    with scratch_schema(f"run_{os.getpid()}") as url:
        yield url


@pytest.fixture
def config(tmp_path, monkeypatch, postgres_url):
    monkeypatch.setenv("POLYGENIX_INSTANCE_PATH", str(tmp_path / "instance"))
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-" + "s" * 40,
        "JWT_SECRET_KEY": "test-jwt-secret-key-" + "j" * 60,
        "SQLALCHEMY_DATABASE_URI": postgres_url or f"sqlite:///{tmp_path / 'test.db'}",
        "REDIS_URL": TEST_REDIS_URL,
        "PASSWORD_HASH_METHOD": FAST_HASH,
        # Keys the tests leave in Redis are recognisable, and deleted after each test.
        "REDIS_KEY_PREFIX": REDIS_TEST_PREFIX,
        "RATELIMIT_KEY_PREFIX": REDIS_TEST_PREFIX + "limits",
    }


@pytest.fixture
def make_app(config, postgres_url):
    """Build apps over the test database; their tables are emptied and engines closed after."""
    apps = []

    def make(overrides=None):
        app = create_app(config | (overrides or {}))
        with app.app_context():
            db.create_all()
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.engine.dispose()
        health.dispose(app)
    if TEST_REDIS_URL:
        with redis.Redis.from_url(TEST_REDIS_URL) as shared:
            # Rate-limit counts too (stored as LIMITS:LIMITER/<prefix>...).
            for key in shared.scan_iter(match=f"*{REDIS_TEST_PREFIX}*", count=1000):
                shared.delete(key)
    if postgres_url:
        # Straight to the run's schema: an app's own engine may go through a proxy a test
        # has cut.
        engine = create_engine(postgres_url)
        tables = ", ".join(t.name for t in db.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Auth:
    """Makes users through the real API and hands back their tokens or bearer headers.

    Every call takes the client of another app with `client=` (another worker, other settings).
    The test's own `app` and `client` are made only when a call needs them: a test that always
    passes `client=` builds no app it does not use.
    """

    def __init__(self, request):
        self._request = request

    @property
    def app(self):
        return self._request.getfixturevalue("app")

    @property
    def client(self):
        return self._request.getfixturevalue("client")

    def tokens(self, email="ada@example.com", name="Ada Lovelace", password=PASSWORD, client=None):
        """Register; the whole token response (access, refresh, expires_in)."""
        response = (client or self.client).post(
            "/api/auth/register", json={"name": name, "email": email, "password": password}
        )
        assert response.status_code == 200, response.json
        return response.json

    def register(
        self, email="ada@example.com", name="Ada Lovelace", password=PASSWORD, client=None
    ):
        """Register; bearer headers for the new user."""
        return bearer(self.tokens(email, name, password, client)["access_token"])

    def admin(self, email="root@example.com", client=None):
        with (client.application if client else self.app).app_context():
            create_user(name="Admin", email=email, password=PASSWORD, is_admin=True)
        return self.login(email, client=client)

    def login_tokens(self, email="ada@example.com", password=PASSWORD, client=None):
        """Log in; the whole token response (another login: its own token family)."""
        response = (client or self.client).post(
            "/api/auth/login", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.json
        return response.json

    def login(self, email="ada@example.com", password=PASSWORD, client=None):
        """Log in; bearer headers."""
        return bearer(self.login_tokens(email, password, client)["access_token"])

    def user_id(self, headers, client=None):
        return (client or self.client).get("/api/user/", headers=headers).json["id"]


@pytest.fixture
def auth(request):
    return Auth(request)


@pytest.fixture
def ada(auth):
    """Ada, registered on the test's app: her bearer headers."""
    return auth.register("ada@example.com", "Ada")


@pytest.fixture
def bob(auth):
    """Bob, registered on the test's app: his bearer headers."""
    return auth.register("bob@example.com", "Bob")


@pytest.fixture
def database_proxy(postgres_url):
    """A TCP proxy in front of the run's PostgreSQL; `.url` is the database through it."""
    url = make_url(postgres_url)
    proxy = TCPProxy(url.host, url.port or 5432)
    proxy.url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    yield proxy
    proxy.close()
