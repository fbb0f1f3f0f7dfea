"""Extensions, created once and bound to an app in `create_app`."""

import sqlite3

import redis
from flask import current_app
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, MetaData, event
from sqlalchemy.orm import DeclarativeBase

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Objects stay readable after commit: a chat turn commits twice and then serialises its reply.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
jwt = JWTManager()
REDIS = "polygenix.redis"


def init_redis(app) -> None:
    """One Redis connection pool per app when REDIS_URL is set; short timeouts so a Redis outage
    turns into quick 503s rather than hung workers."""
    url = app.config.get("REDIS_URL")
    app.extensions[REDIS] = (
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) if url else None
    )


def redis_client() -> redis.Redis | None:
    return current_app.extensions.get(REDIS)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite enforces foreign keys (ON DELETE CASCADE) only when asked, per connection.

    WAL and a busy timeout let several gunicorn workers share the file: readers never block the
    writer, and a writer waits for another instead of failing at once. In WAL mode,
    synchronous=NORMAL syncs at checkpoints rather than at every commit: a crash of the app or
    the process loses nothing, a power cut may lose the last commits, the file is never corrupt.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
