"""Revoked tokens and token families: in Redis when REDIS_URL is set (shared by every worker and
host, each entry expiring when it no longer matters), otherwise in the database.

Entries are keyed by a token's `jti`, or by `family:<fam>` for every token descended from one
login (refresh tokens rotate; re-using a spent one revokes its whole family).
"""

from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db, redis_client
from ..models import RevokedToken, User


def _redis_key(entry: str) -> str:
    return f"{current_app.config['REDIS_KEY_PREFIX']}revoked:{entry}"


def _add(entry: str, expires_at: datetime) -> bool:
    """Record `entry` until `expires_at`; True if it was not recorded already."""
    ttl = int((expires_at - datetime.now(UTC)).total_seconds()) + 1
    if ttl <= 0:
        return True
    redis = redis_client()
    if redis is not None:
        return bool(redis.set(_redis_key(entry), 1, ex=ttl, nx=True))
    # Expired entries can go: their tokens are refused for expiry anyway.
    db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < datetime.now(UTC)))
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    added = db.session.execute(
        insert(RevokedToken).values(jti=entry, expires_at=expires_at).on_conflict_do_nothing()
    ).rowcount
    db.session.commit()
    return added == 1


def revoke(payload: dict) -> bool:
    """Revoke the token with these claims for the rest of its life; False if it already was."""
    return _add(payload["jti"], datetime.fromtimestamp(payload["exp"], UTC))


def revoke_family(payload: dict) -> None:
    """Revoke every token of this token's family (for as long as a refresh token can live)."""
    if payload.get("fam"):
        lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
        _add(f"family:{payload['fam']}", datetime.now(UTC) + lifetime + timedelta(minutes=1))


def _entries(payload: dict) -> list[str]:
    return [payload["jti"]] + ([f"family:{payload['fam']}"] if payload.get("fam") else [])


# Every authenticated request runs it: built once rather than per request.
_USER_AND_REVOCATION = select(
    User, exists().where(RevokedToken.jti.in_(bindparam("entries", expanding=True)))
).where(User.id == bindparam("user_id"))


def user_and_revocation(payload: dict, user_id: int) -> tuple[User | None, bool]:
    """The token's user, and whether the token or its family is revoked: one round trip to the
    database (or one to it and one to Redis), since every authenticated request asks."""
    if not payload.get("jti"):
        return None, True
    redis = redis_client()
    if redis is not None:
        user = db.session.get(User, user_id)
        return user, redis.exists(*[_redis_key(e) for e in _entries(payload)]) > 0
    row = db.session.execute(
        _USER_AND_REVOCATION, {"user_id": user_id, "entries": _entries(payload)}
    ).first()
    return (row[0], bool(row[1])) if row else (None, False)
