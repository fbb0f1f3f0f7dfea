"""Liveness and readiness for load balancers and orchestrators (not part of the API spec)."""

from flask import Blueprint
from sqlalchemy import text

from .api import error_response
from .extensions import db, redis_client

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up and serving; touches nothing else."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Ready when the database answers SELECT 1 and Redis (if configured) answers PING."""
    checks = {"database": _check(lambda: db.session.execute(text("SELECT 1")))}
    redis = redis_client()
    if redis is not None:
        checks["redis"] = _check(redis.ping)
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return error_response(
            503,
            f"Not ready: {', '.join(failing)} unavailable",
            headers={"Retry-After": "1"},
            checks=checks,
        )
    return {"status": "ready", "checks": checks}


def _check(probe) -> str:
    try:
        probe()
    except Exception:  # any failure means not ready; the reason is the service's own log
        db.session.rollback()
        return "unavailable"
    return "ok"
