"""The `polygenix` command: every command of the app's CLI (`polygenix db upgrade`, `polygenix users
create`, ...), `polygenix serve` (gunicorn with PolyGenix's settings) and `polygenix worker`.

Settings come from the environment; a `.env` file in the working folder fills in what the
environment does not set.
"""

import logging
import os
import sys

import click
from dotenv import load_dotenv
from flask.cli import FlaskGroup
from sqlalchemy.exc import SQLAlchemyError

from . import create_app, schema
from .extensions import db
from .serving import metrics_directory

CONFIG = "polygenix.gunicorn_config"
APP = "polygenix:create_app()"

log = logging.getLogger(__name__)

cli = FlaskGroup(
    name="polygenix",
    create_app=create_app,
    # Only the working folder's .env (main() reads it), not one found in a folder above.
    load_dotenv=False,
    help="PolyGenix: serve the API, migrate the database, manage users, keys and jobs.",
)


def schema_problem(app) -> str | None:
    """What keeps the database from serving this version, or None (also when it cannot be
    reached: then requests answer 503 until it can, as they would after a start)."""
    try:
        with app.app_context(), db.engine.connect() as connection:
            return schema.problem(connection)
    except SQLAlchemyError as e:
        log.warning("the database could not be checked at start: %s", type(e).__name__)
        return None
    finally:
        with app.app_context():
            db.engine.dispose()


@cli.command("serve", with_appcontext=False)
@click.option("--bind", help="Address to listen on [POLYGENIX_BIND, default 127.0.0.1:8000].")
@click.option("--workers", type=click.IntRange(1), help="Worker processes [WEB_CONCURRENCY, 2].")
@click.option("--threads", type=click.IntRange(1), help="Threads per worker [GUNICORN_THREADS].")
def serve(bind: str | None, workers: int | None, threads: int | None) -> None:
    """Serve the API with gunicorn (threaded workers); refuses an un-migrated database."""
    for name, value in (
        ("POLYGENIX_BIND", bind),
        ("WEB_CONCURRENCY", workers),
        ("GUNICORN_THREADS", threads),
    ):
        if value is not None:
            os.environ[name] = str(value)
    problem = schema_problem(create_app())
    if problem:
        raise click.ClickException(problem)
    # A new process: this one imported prometheus_client before PROMETHEUS_MULTIPROC_DIR was
    # set, and gunicorn's workers are forked from its master (see serving.py).
    metrics_directory(os.environ)
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", f"python:{CONFIG}", APP]
    os.execv(sys.executable, gunicorn)


def main() -> None:
    load_dotenv(os.path.join(os.getcwd(), ".env"))
    cli.main(prog_name="polygenix")
