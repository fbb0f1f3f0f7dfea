"""Assertions, values and database helpers the test modules share."""

import os
import secrets
import socket
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url

from config import database_url

PASSWORD = "correct horse battery"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


@contextmanager
def scratch_schema(prefix: str, database: str | None = None):
    """A new, empty PostgreSQL schema in `database` (default TEST_DATABASE_URL); yields a URL
    that uses it, and drops it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    url = make_url(database_url(database or TEST_DATABASE_URL))
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        scoped = url.update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        engine.dispose()


def assert_envelope(response, code, message=None):
    """The one error shape: code, status, message, and detail equal to message."""
    assert response.status_code == code
    assert response.is_json, response.data[:200]
    body = response.json
    assert body["code"] == code
    assert isinstance(body["status"], str) and body["status"]
    assert body["detail"] == body["message"]
    if message is not None:
        assert message in body["message"]
    return body


def closed_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Databases nothing answers at: a SQLite file that cannot be created, a PostgreSQL port no one
# listens on.
UNREACHABLE_DATABASES = [
    "sqlite:////nonexistent-directory/polygenix.db",
    f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test?connect_timeout=2",
]
