import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from polygenix import create_app
from polygenix.chat.search import include_object
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
