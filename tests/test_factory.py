import json
import os
import stat
from datetime import timedelta

import pytest

from config import ConfigError
from polygenix import create_app


def test_config_overrides_environment(config, monkeypatch):
    monkeypatch.setenv("ACCESS_TOKEN_EXPIRE_MINUTES", "5")
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "100")
    app = create_app(config | {"MAX_MESSAGE_CHARS": 7})
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(minutes=5)
    assert app.config["MAX_MESSAGE_CHARS"] == 7
    assert app.testing


def test_defaults(config):
    app = create_app(config)
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(minutes=30)
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    assert app.config["MAX_MESSAGE_CHARS"] == 32_000
    assert app.config["POLYGENIX_ENV"] == "development"


def test_the_connection_used_last_is_handed_out_first(app):
    from polygenix.extensions import db

    with app.app_context():
        first, second = db.engine.raw_connection(), db.engine.raw_connection()
        used_last = second.dbapi_connection
        first.close()
        second.close()
        again = db.engine.raw_connection()
        assert again.dbapi_connection is used_last
        again.close()


def test_database_defaults_to_sqlite_in_instance_folder(config, tmp_path):
    del config["SQLALCHEMY_DATABASE_URI"]
    app = create_app(config)
    expected = tmp_path / "instance" / "polygenix.db"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{expected}"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "soon", "whole number"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "0", "at least 1"),
        ("POLYGENIX_ENV", "staging", "development or production"),
        ("JWT_ALGORITHM", "none", "HS256"),
        ("SQLALCHEMY_ECHO", "maybe", "true or false"),
        ("OLLAMA_BASE_URL", "localhost:11434", "http:// or https://"),
        ("OPENAI_COMPATIBLE_BASE_URL", "ftp://models.example/v1", "http:// or https://"),
    ],
)
def test_bad_setting_fails_at_start_with_its_name(config, monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as info:
        create_app(config)
    assert says in str(info.value)


def test_development_generates_secrets_once_and_keeps_them(config, tmp_path):
    del config["SECRET_KEY"], config["JWT_SECRET_KEY"]
    first = create_app(config)
    second = create_app(config)
    path = tmp_path / "instance" / "secrets.json"
    stored = json.loads(path.read_text())
    assert len(stored["JWT_SECRET_KEY"]) >= 48
    assert stored["SECRET_KEY"] != stored["JWT_SECRET_KEY"]
    assert (
        first.config["JWT_SECRET_KEY"]
        == second.config["JWT_SECRET_KEY"]
        == stored["JWT_SECRET_KEY"]
    )
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Nothing left behind by the atomic write.
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json"]


def test_tokens_survive_a_restart_with_generated_secrets(config, make_app, auth):
    del config["SECRET_KEY"], config["JWT_SECRET_KEY"]
    token = auth.tokens(client=make_app().test_client())["access_token"]
    restarted = make_app().test_client()
    assert restarted.get(f"/api/auth/verify-token/{token}").status_code == 200


def test_production_refuses_to_start_without_secrets(config, monkeypatch, tmp_path):
    monkeypatch.setenv("POLYGENIX_ENV", "production")
    del config["JWT_SECRET_KEY"]
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY must be set"):
        create_app(config)
    assert not (tmp_path / "instance" / "secrets.json").exists()


def test_production_starts_with_secrets(config, monkeypatch):
    monkeypatch.setenv("POLYGENIX_ENV", "production")
    assert create_app(config).config["POLYGENIX_ENV"] == "production"


def test_two_apps_do_not_share_state(config, tmp_path):
    """The Api is built per app, so a second app in one process gets its own routes and spec."""
    first = create_app(config)
    second = create_app(config | {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'b.db'}"})
    assert first.extensions["flask-smorest"] is not second.extensions["flask-smorest"]
    assert second.test_client().get("/openapi.json").status_code == 200
