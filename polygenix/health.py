"""Liveness and readiness for load balancers and orchestrators (not part of the API spec).

/readyz answers within PROBE_SECONDS whatever the database and Redis do: each is asked on a
thread of its own over a fresh connection, and one that has not answered by then counts as
unavailable. Without the database nothing works (503); without Redis PolyGenix keeps serving,
counting rate limits in each process meanwhile (200, "degraded"), and stays "degraded" until this
process counts them in Redis again (`rate_limits`: the probe tries Redis again when a try is due).
"""

import contextlib
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial

import redis as redis_library
from flask import Blueprint, current_app
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from . import clock, limits
from .database import ANSWER_TIMEOUT
from .errors import error_response

bp = Blueprint("health", __name__)
PROBE_SECONDS = 1.5
PROBES = "polygenix.health"
FAILED = {"rate_limits": "per_process"}  # what a failed check says, when not "unavailable"


@bp.get("/healthz")
def healthz():
    """The process is up and serving; touches nothing else."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Ready when the database answers SELECT 1; Redis (if configured) answering PING is
    reported, and its absence makes PolyGenix degraded, not unready."""
    probes = _probes()
    checks_to_run = dict(probes.checks)
    counter = limits.counter()
    if "redis" in checks_to_run and counter is not None:
        checks_to_run["rate_limits"] = partial(counter.probe, clock.timestamp())
    futures = {name: probes.pool.submit(probe) for name, probe in checks_to_run.items()}
    wait(futures.values(), timeout=PROBE_SECONDS)
    checks = {
        name: "ok" if f.done() and f.exception() is None else FAILED.get(name, "unavailable")
        for name, f in futures.items()
    }
    if checks.get("redis") == "unavailable" and "rate_limits" in checks:
        checks["rate_limits"] = FAILED["rate_limits"]  # what the next hit will do
    if checks["database"] != "ok":
        return error_response(
            503, "Not ready: database unavailable", headers={"Retry-After": "1"}, checks=checks
        )
    status = "ready" if all(state == "ok" for state in checks.values()) else "degraded"
    return {"status": status, "checks": checks}


class _Probes:
    """A database engine with no pool and short timeouts, a Redis client likewise, and the
    threads that run them (made once per app)."""

    def __init__(self, app):
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        connect_args = dict(options.get("connect_args") or {})
        if ANSWER_TIMEOUT in connect_args:  # PostgreSQL
            connect_args |= {"connect_timeout": 2, ANSWER_TIMEOUT: PROBE_SECONDS}
        self.engine = create_engine(
            app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool, connect_args=connect_args
        )
        self.checks = {"database": self._database}
        if app.config["REDIS_URL"]:
            self.redis = redis_library.Redis.from_url(
                app.config["REDIS_URL"],
                socket_timeout=PROBE_SECONDS,
                socket_connect_timeout=PROBE_SECONDS,
            )
            self.checks["redis"] = self.redis.ping
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")

    def _database(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def _probes() -> _Probes:
    app = current_app._get_current_object()
    if PROBES not in app.extensions:
        app.extensions[PROBES] = _Probes(app)
    return app.extensions[PROBES]


def dispose(app) -> None:
    """Close the probes' connections (tests that make many apps)."""
    probes = app.extensions.pop(PROBES, None)
    if probes is not None:
        probes.pool.shutdown(wait=False)
        probes.engine.dispose()
        with contextlib.suppress(AttributeError):
            probes.redis.close()
