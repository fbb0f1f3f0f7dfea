"""PolyGenix: a self-hostable, multi-user, multi-model AI chat REST API."""

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from .api import Api
from .attachments import init_attachments
from .attachments.cli import attachments
from .attachments.routes import UploadRequest
from .attachments.routes import blp as attachments_blp
from .auth.passwords import init_passwords
from .auth.routes import blp as auth_blp
from .auth.tokens import init_jwt
from .chat.routes import blp as chat_blp
from .chat.sweep import init_sweep
from .chat.titles import init_titles
from .cli import chats, keys, providers, usage, users
from .config import load_config
from .database import engine_options
from .docs import ASSETS_URL
from .docs import bp as docs_bp
from .errors import init_errors
from .extensions import db, init_redis, jwt, migrate
from .governance.policy import init_governance
from .governance.routes import admin_blp, usage_blp
from .health import bp as health_bp
from .jobs import init_jobs
from .jobs.cli import jobs, worker
from .keys.routes import blp as keys_blp
from .limits import init_limits
from .logs import init_logging
from .metrics import init_metrics
from .openai_api import bp as openai_bp
from .provider_registry import init_providers
from .schema import migrations_directory
from .security import init_security
from .strictjson import StrictJSONProvider
from .user.routes import blp as user_blp
from .web import bp as web_bp

API_SPEC = {
    "API_TITLE": "PolyGenix",
    "API_VERSION": "1.0",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    "OPENAPI_SWAGGER_UI_URL": ASSETS_URL,
    "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True},
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then `config` (a mapping) over them."""
    instance_path = os.environ.get("POLYGENIX_INSTANCE_PATH")
    app = Flask(
        __name__,
        instance_path=os.path.abspath(instance_path) if instance_path else None,
        static_folder=None,
    )
    # `/api//auth/verify-token/<token>` is a 404, not a redirect that repeats the token in a
    # Location header and in the redirected request's log line.
    app.url_map.merge_slashes = False
    app.request_class = UploadRequest
    app.json = StrictJSONProvider(app)
    app.config.update(API_SPEC)
    app.config.update(load_config(os.environ, app.instance_path))
    app.config.update(config or {})
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))
    os.makedirs(app.instance_path, exist_ok=True)
    _ensure_secrets(app)

    init_logging(app)
    db.init_app(app)
    init_redis(app)
    init_limits(app)
    init_passwords(app)
    init_providers(app)
    init_jobs(app)
    init_titles(app)
    init_sweep(app)
    init_attachments(app)
    init_governance(app)
    migrate.init_app(app, db, directory=str(migrations_directory()))
    jwt.init_app(app)
    init_jwt(jwt)

    api = Api(app)
    for blp in (auth_blp, user_blp, attachments_blp, chat_blp, keys_blp, usage_blp, admin_blp):
        api.register_blueprint(blp)
    app.register_blueprint(openai_bp)
    app.register_blueprint(docs_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(web_bp)
    init_security(app)
    init_metrics(app)

    init_errors(app, jwt)

    app.cli.add_command(users)
    app.cli.add_command(providers)
    app.cli.add_command(chats)
    app.cli.add_command(keys)
    app.cli.add_command(usage)
    app.cli.add_command(jobs)
    app.cli.add_command(worker)
    app.cli.add_command(attachments)
    return app


def _ensure_secrets(app: Flask) -> None:
    """Production needs both keys set; development makes them once and keeps them on disk."""
    missing = [k for k in ("SECRET_KEY", "JWT_SECRET_KEY") if not app.config.get(k)]
    if not missing:
        return
    if app.config["POLYGENIX_ENV"] == "production":
        raise RuntimeError(
            f"{' and '.join(missing)} must be set when POLYGENIX_ENV=production "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    stored = _stored_secrets(Path(app.instance_path) / "secrets.json")
    for key in missing:
        app.config[key] = stored[key]


def _stored_secrets(path: Path) -> dict[str, str]:
    """Read the instance's generated keys, creating the file atomically the first time.

    Several workers may start at once: the file is written aside and linked into place, so
    exactly one set of keys wins and every worker reads that one.
    """
    if not path.exists():
        fresh = {k: secrets.token_urlsafe(48) for k in ("SECRET_KEY", "JWT_SECRET_KEY")}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(fresh, f)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return json.loads(path.read_text())
