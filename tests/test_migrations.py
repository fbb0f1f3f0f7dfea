import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from polygenix import create_app
from polygenix.extensions import db
from tests.helpers import TEST_DATABASE_URL, scratch_schema


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
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_upgrade_builds_exactly_the_models_schema(empty_app):
    runner = empty_app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert pending_changes(empty_app) == []
    with empty_app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert {"users", "chat_sessions", "messages", "revoked_tokens", "alembic_version"} == tables


def test_downgrade_to_base_and_back(empty_app):
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
    with empty_app.app_context():
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    assert pending_changes(empty_app) == []


def test_migrated_database_serves_the_api(empty_app):
    assert empty_app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    client = empty_app.test_client()
    token = client.post(
        "/api/auth/register",
        json={"name": "Ada", "email": "ada@example.com", "password": "long enough"},
    ).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    reply = client.post(
        "/api/ai_chat/request", headers=headers, json={"content": "hi", "model": "echo"}
    )
    assert reply.status_code == 200
    assert client.delete("/api/ai_chat/1", headers=headers).status_code == 200
