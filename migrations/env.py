"""Alembic environment for Flask-Migrate: the app's engine and metadata (Flask-SQLAlchemy 3).

Two `db upgrade` runs at once (hosts deployed together) take turns: a PostgreSQL advisory lock,
or on SQLite a lock file beside the database; the second finds the schema current and does
nothing. On SQLite, an upgrade to the latest revision fails unless every table with integer ids
keeps AUTOINCREMENT and the search triggers are in place (see `check_sqlite`).
"""

import contextlib
import fcntl
import hashlib
import logging
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from alembic.script import ScriptDirectory
from flask import current_app

from polygenix.chat.search import FTS_TABLES, include_object

config = context.config

# Keep the loggers the app already made (its request log) working after a migration runs.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db
config.set_main_option(
    "sqlalchemy.url",
    target_db.engine.url.render_as_string(hide_password=False).replace("%", "%%"),
)


def run_migrations_offline():
    """Emit the migration as SQL (`flask db upgrade --sql`) without connecting."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_db.metadata,
        include_object=include_object,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def id_tables(metadata) -> list[str]:
    """The tables whose ids the database makes (one integer primary key, not a foreign key):
    SQLite's rowid, which it hands out again once the highest row is deleted unless the table is
    AUTOINCREMENT."""
    return [t.name for t in metadata.sorted_tables if t.autoincrement_column is not None]


def check_sqlite(connection, metadata) -> None:
    """Refuse a schema that would hand an id out twice or search stale text: every table of
    `id_tables` must be AUTOINCREMENT, and each search index must have its three triggers (a
    batch migration that rebuilds a table drops both)."""
    master = dict(
        connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'trigger')"
        ).all()
    )
    lacking = [t for t in id_tables(metadata) if "AUTOINCREMENT" not in (master.get(t) or "")]
    if lacking:
        raise RuntimeError(f"these tables lost AUTOINCREMENT, so ids could be reused: {lacking}")
    missing = [
        f"{fts}_{event}"
        for fts in FTS_TABLES
        if fts in master
        for event in ("insert", "delete", "update")
        if f"{fts}_{event}" not in master
    ]
    if missing:
        raise RuntimeError(f"full-text search triggers missing: {missing}")


@contextlib.contextmanager
def one_upgrade_at_a_time(connection):
    """Hold the database's migration lock: other runs wait for it."""
    if connection.dialect.name == "postgresql":
        schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
        digest = hashlib.sha256(f"polygenix-migrations:{schema}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        # An upgrade may take longer than the app's statement timeout: wait it out.
        connection.exec_driver_sql("SET statement_timeout = 0")
        connection.exec_driver_sql("SELECT pg_advisory_lock(%s)", (key,))
        connection.exec_driver_sql("RESET statement_timeout")
        connection.commit()
        try:
            yield
        finally:
            connection.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
            connection.commit()
        return
    database = connection.engine.url.database
    if connection.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    # Not SQLite's own locking: its busy timeout (seconds) is shorter than a long migration.
    with open(Path(database).with_name(Path(database).name + ".migrate-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_migrations_online():
    """Run the migration over a connection from the app's engine."""

    def process_revision_directives(context, revision, directives):
        # `flask db migrate` with no model changes writes no empty revision.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    # The search objects are outside the models: autogenerate would propose dropping them.
    conf_args.setdefault("include_object", include_object)

    head = ScriptDirectory.from_config(config).get_current_head()
    with target_db.engine.connect() as connection, one_upgrade_at_a_time(connection):
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by copying it to a new one and dropping the old: with
            # foreign keys enforced, dropping `users` would delete every session through ON DELETE
            # CASCADE. The pragma cannot change inside a transaction, so it is set before one.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        try:
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
                    if context.get_context().get_current_revision() == head:
                        check_sqlite(connection, target_db.metadata)
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
