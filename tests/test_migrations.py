import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import inspect

from polygenix import create_app
from polygenix.chat.search import include_object, search
from polygenix.extensions import db
from tests.helpers import TEST_DATABASE_URL, ask, scratch_schema


@pytest.fixture
def empty_app(config, tmp_path):
    """An app over an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if not TEST_DATABASE_URL:
        app = create_app(config | {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'm.db'}"})
        yield app
        return
    with scratch_schema("migrations") as url:
        app = create_app(config | {"SQLALCHEMY_DATABASE_URI": url})
        yield app
        with app.app_context():
            db.engine.dispose()


def pending_changes(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include_object}
        )
        return compare_metadata(context, db.metadata)


def test_upgrade_builds_exactly_the_models_schema(empty_app):
    runner = empty_app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert pending_changes(empty_app) == []
    with empty_app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        sqlite = db.engine.dialect.name == "sqlite"
    # On SQLite, search's FTS5 tables and the shadow tables FTS5 keeps their index in.
    fts = {
        f"{table}_fts{part}"
        for table in ("messages", "chat_sessions")
        for part in ("", "_data", "_idx", "_docsize", "_config")
    }
    assert (fts if sqlite else set()) | {
        "users",
        "chat_sessions",
        "messages",
        "revoked_tokens",
        "rate_limit_counts",
        "api_keys",
        "user_limits",
        "usage_daily",
        "jobs",
        "job_schedules",
        "budget_reservations",
        "responses",
        "attachments",
        "attachment_data",
        "alembic_version",
    } == tables


def test_downgrade_to_base_and_back(empty_app):
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
    with empty_app.app_context():
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert pending_changes(empty_app) == []


def test_migrated_database_serves_the_api(empty_app, auth):
    assert empty_app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = empty_app.test_client()
    headers = auth.register(client=client)
    reply = ask(client, headers, "hi")
    assert reply.status_code == 200
    assert client.delete("/api/ai_chat/1", headers=headers).status_code == 200


def test_reply_to_is_backfilled_for_earlier_replies(empty_app):
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0005"]).exit_code == 0
    with empty_app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, name, password_hash, is_admin, token_version, "
            "created_at) VALUES (1, 'a@b.co', 'A', 'x', false, 0, '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO chat_sessions (id, user_id, number, title, created_at) "
            "VALUES (1, 1, 1, 't', '2026-01-01 00:00:00')"
        )
        for message_id, is_bot in [(1, False), (2, True), (3, False), (4, False), (5, True)]:
            connection.exec_driver_sql(
                "INSERT INTO messages (id, session_id, is_bot, content, created_at, incomplete) "
                f"VALUES ({message_id}, 1, {str(is_bot).lower()}, 'm', '2026-01-01 00:00:00', "
                "false)"
            )
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with empty_app.app_context(), db.engine.connect() as connection:
        pairs = connection.exec_driver_sql("SELECT id, reply_to_id FROM messages ORDER BY id").all()
    assert [tuple(p) for p in pairs] == [(1, None), (2, 1), (3, None), (4, None), (5, 4)]


def test_upgrade_keeps_data_and_stops_id_reuse(empty_app):
    """0007 rebuilds SQLite's tables as AUTOINCREMENT without losing a row (dropping the old
    `users` with foreign keys on would have deleted every session), and gives each user a key."""
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0006"]).exit_code == 0
    with empty_app.app_context(), db.engine.begin() as connection:
        for user_id in (1, 2):
            connection.exec_driver_sql(
                "INSERT INTO users (id, email, name, password_hash, is_admin, token_version, "
                f"created_at) VALUES ({user_id}, 'u{user_id}@b.co', 'A', 'x', false, 0, "
                "'2026-01-01 00:00:00')"
            )
        connection.exec_driver_sql(
            "INSERT INTO chat_sessions (id, user_id, number, title, created_at) "
            "VALUES (1, 2, 1, 't', '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO messages (id, session_id, is_bot, content, created_at, incomplete) "
            "VALUES (1, 1, false, 'm', '2026-01-01 00:00:00', false)"
        )
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with empty_app.app_context(), db.engine.begin() as connection:
        keys = connection.exec_driver_sql("SELECT token_key FROM users ORDER BY id").scalars()
        keys = list(keys)
        assert len(set(keys)) == 2 and all(len(k) == 32 for k in keys)
        counts = [
            connection.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
            for t in ("users", "chat_sessions", "messages")
        ]
        assert counts == [2, 1, 1]
        if connection.dialect.name == "postgresql":
            # Rows inserted with explicit ids leave a sequence behind; the app never does that.
            connection.exec_driver_sql("SELECT setval(pg_get_serial_sequence('users', 'id'), 2)")
        connection.exec_driver_sql("DELETE FROM users WHERE id = 2")
        assert connection.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 0
        connection.exec_driver_sql(
            "INSERT INTO users (email, name, password_hash, is_admin, token_key, created_at) "
            "VALUES ('new@b.co', 'N', 'x', false, 'k', '2026-01-01 00:00:00')"
        )
        new_id = connection.exec_driver_sql(
            "SELECT id FROM users WHERE email = 'new@b.co'"
        ).scalar()
    assert new_id == 3


def id_tables() -> list[str]:
    """The tables whose ids the database makes: one integer primary key, not a foreign key."""
    return [t.name for t in db.metadata.sorted_tables if t.autoincrement_column is not None]


def autoincrement_tables(app) -> set[str]:
    with app.app_context(), db.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
        ).all()
    return {name for name, sql in rows if "AUTOINCREMENT" in (sql or "")}


def test_the_models_declare_every_table_with_ids_autoincrement():
    """create_all (the test suite's databases, a fresh install's) makes them AUTOINCREMENT."""
    assert {"users", "chat_sessions", "messages", "api_keys"} <= set(id_tables())
    for name in id_tables():
        assert db.metadata.tables[name].dialect_options["sqlite"]["autoincrement"], name


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's schema")
def test_upgrade_from_empty_keeps_every_table_with_ids_autoincrement(empty_app):
    """Fails if any migration, this one or a later one, rebuilds a table without AUTOINCREMENT
    (SQLite would then hand the highest id out again once its row is deleted)."""
    result = empty_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert set(id_tables()) <= autoincrement_tables(empty_app)
    with empty_app.app_context(), db.engine.connect() as connection:
        triggers = set(
            connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).scalars()
        )
    assert triggers == {
        f"{table}_fts_{event}"
        for table in ("messages", "chat_sessions")
        for event in ("insert", "delete", "update")
    }


def _populate_at_0013(connection) -> None:
    """Two users, three sessions, six messages, made the way the app at 0013 made them."""
    now = "'2026-01-01 00:00:00'"
    for user_id in (1, 2):
        connection.exec_driver_sql(
            "INSERT INTO users (id, email, name, password_hash, is_admin, token_key, created_at) "
            f"VALUES ({user_id}, 'u{user_id}@b.co', 'A', 'x', false, 'k{user_id}', {now})"
        )
    for session_id, user_id in ((1, 1), (2, 2), (3, 1)):
        connection.exec_driver_sql(
            "INSERT INTO chat_sessions (id, user_id, number, title, created_at, changed_at, "
            f"updated_at) VALUES ({session_id}, {user_id}, {session_id}, 'title {session_id}', "
            f"{now}, {now}, {now})"
        )
    for message_id, session_id in ((1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)):
        connection.exec_driver_sql(
            "INSERT INTO messages (id, session_id, is_bot, content, created_at, incomplete, "
            f"superseded) VALUES ({message_id}, {session_id}, {str(message_id % 2 == 0).lower()}, "
            f"'word{message_id} shared', {now}, false, false)"
        )


def _insert_session(connection, user_id: int) -> tuple[int, int]:
    """A new session with one message, ids chosen by the database: (session id, message id)."""
    now = "'2026-01-02 00:00:00'"
    session_id = connection.exec_driver_sql(
        "INSERT INTO chat_sessions (user_id, number, title, created_at, changed_at, updated_at) "
        f"VALUES ({user_id}, 99, 'fresh', {now}, {now}, {now}) RETURNING id"
    ).scalar()
    message_id = connection.exec_driver_sql(
        "INSERT INTO messages (session_id, is_bot, content, created_at, incomplete, superseded) "
        f"VALUES ({session_id}, false, 'fresh words', {now}, false, false) RETURNING id"
    ).scalar()
    return session_id, message_id


def test_upgrading_a_populated_database_stops_id_reuse_and_keeps_search(empty_app):
    """A database made at 0013 (ids reused there on SQLite), its newest rows deleted, upgraded:
    every row and index is kept, the tables are AUTOINCREMENT, search still finds old and new
    text, and deleting the newest rows after the upgrade never frees their ids."""
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0013"]).exit_code == 0
    with empty_app.app_context(), db.engine.begin() as connection:
        _populate_at_0013(connection)
        if connection.dialect.name == "postgresql":
            for table, highest in (("users", 2), ("chat_sessions", 3), ("messages", 6)):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {highest})"
                )
        connection.exec_driver_sql("DELETE FROM chat_sessions WHERE id = 3")  # and 5, 6
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert pending_changes(empty_app) == []
    sqlite = TEST_DATABASE_URL is None
    if sqlite:
        assert set(id_tables()) <= autoincrement_tables(empty_app)
    with empty_app.app_context(), db.engine.begin() as connection:
        counts = [
            connection.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
            for t in ("users", "chat_sessions", "messages")
        ]
        assert counts == [2, 2, 4]
        if sqlite:
            sequences = dict(
                connection.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").all()
            )
            assert sequences["chat_sessions"] >= 2 and sequences["messages"] >= 4
        counters = dict(
            connection.exec_driver_sql("SELECT id, last_session_number FROM users").all()
        )
        assert counters == {1: 1, 2: 2}  # each user's highest number (session 3 went)
        first = _insert_session(connection, 2)
        assert first[0] > 2 and first[1] > 4
        # The newest rows deleted after the upgrade: their ids are never handed out again.
        connection.exec_driver_sql(f"DELETE FROM chat_sessions WHERE id = {first[0]}")
        second = _insert_session(connection, 2)
        assert second[0] > first[0] and second[1] > first[1]
    with empty_app.app_context():
        assert {r["message_id"] for r in search(2, "shared", 1, 10)[1]} == {3, 4}
        assert [r["message_id"] for r in search(2, "fresh words", 1, 10)[1]] == [second[1]]
        assert search(1, "word5", 1, 10)[0] == 0  # deleted before: not found


def _rebuild_without_autoincrement(app, table: str) -> None:
    """What a careless batch migration does on SQLite."""
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        operations = Operations(MigrationContext.configure(connection))
        with operations.batch_alter_table(table, recreate="always"):
            pass


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's schema")
@pytest.mark.parametrize("table", ["messages", "api_keys"])
def test_an_upgrade_that_leaves_ids_reusable_fails(empty_app, table):
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    _rebuild_without_autoincrement(empty_app, table)
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code != 0
    assert "lost AUTOINCREMENT" in result.output and table in result.output


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's schema")
def test_an_upgrade_that_leaves_search_triggers_out_fails(empty_app):
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with empty_app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER chat_sessions_fts_update")
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code != 0
    assert "chat_sessions_fts_update" in result.output


@pytest.fixture
def database_url(tmp_path):
    """The URL of an empty database of its own: a new SQLite file, or a new PostgreSQL schema."""
    if not TEST_DATABASE_URL:
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    with scratch_schema("concurrent") as url:
        yield url


def test_upgrades_run_at_once_all_succeed(database_url, tmp_path):
    """Hosts deployed together each run `db upgrade`: they take turns on the migration lock,
    and those that come later find the schema current."""
    env = os.environ | {
        "DATABASE_URL": database_url,
        "POLYGENIX_INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "s" * 48,
        "JWT_SECRET_KEY": "j" * 64,
    }
    command = [sys.executable, "-m", "flask", "--app", "polygenix", "db", "upgrade"]
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True})
    try:
        assert pending_changes(app) == []
    finally:
        with app.app_context():
            db.engine.dispose()
