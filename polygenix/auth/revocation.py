"""Revoked tokens: in Redis when REDIS_URL is set (shared by every worker and host, each entry
expiring with its token), otherwise in the database.
"""

from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db, redis_client
from ..models import RevokedToken


def _key(jti: str) -> str:
    return f"{current_app.config['REDIS_KEY_PREFIX']}revoked:{jti}"


def revoke(payload: dict) -> None:
    """Revoke the token with these claims for the rest of its life."""
    expires_at = datetime.fromtimestamp(payload["exp"], UTC)
    ttl = int((expires_at - datetime.now(UTC)).total_seconds()) + 1
    if ttl <= 0:
        return
    redis = redis_client()
    if redis is not None:
        redis.set(_key(payload["jti"]), 1, ex=ttl)
        return
    # Expired entries can go: their tokens are refused for expiry anyway.
    db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < datetime.now(UTC)))
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    db.session.execute(
        insert(RevokedToken)
        .values(jti=payload["jti"], expires_at=expires_at)
        .on_conflict_do_nothing()
    )
    db.session.commit()


def is_revoked(payload: dict) -> bool:
    jti = payload.get("jti")
    if not jti:
        return True
    redis = redis_client()
    if redis is not None:
        return bool(redis.exists(_key(jti)))
    return db.session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti)) is not None
