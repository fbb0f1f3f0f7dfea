"""Revoked tokens and token families, in the database.

An entry is a token's `jti` (a refresh token once spent), or `family:<fam>` for every token
descended from one login (logout, or a spent refresh token presented again). Every
authenticated request reads its user and its token's entries in one query; Redis is not asked,
so a Redis outage does not stop authentication, and every worker and host sees the same list.
Entries go when their tokens would have expired anyway.
"""

from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .. import clock
from ..extensions import db
from ..models import RevokedToken, User, UserLimits
from .access import OWN_LIMITS, keep_limits


def _add(entry: str, expires_at: datetime) -> None:
    """Record `entry` until `expires_at` (kept as it is if recorded already)."""
    now = clock.now()
    if expires_at <= now:
        return
    db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    db.session.execute(
        insert(RevokedToken)
        .values(jti=entry, expires_at=expires_at, revoked_at=now)
        .on_conflict_do_nothing()
    )
    db.session.commit()


def spend(payload: dict) -> None:
    """A refresh token was exchanged: it works no more (see REFRESH_REUSE_GRACE_SECONDS)."""
    _add(payload["jti"], datetime.fromtimestamp(payload["exp"], UTC))


def revoke_family(payload: dict) -> None:
    """Revoke every token of this token's login (for as long as a refresh token can live)."""
    if payload.get("fam"):
        lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
        _add(f"family:{payload['fam']}", clock.now() + lifetime + timedelta(minutes=1))


# Every authenticated request runs it: built once rather than per request.
_USER_AND_ENTRIES = (
    select(
        User,
        exists().where(RevokedToken.jti == bindparam("family")),
        select(RevokedToken.revoked_at)
        .where(RevokedToken.jti == bindparam("jti"))
        .scalar_subquery(),
        *OWN_LIMITS,
    )
    .outerjoin(UserLimits, UserLimits.user_id == User.id)
    .where(User.id == bindparam("user_id"))
)


def user_and_revocation(payload: dict, user_id: int) -> tuple[User | None, bool]:
    """The token's user, and whether the token is revoked: one round trip to the database,
    which reads the user's own limits too (access.keep_limits).

    A refresh token spent at most REFRESH_REUSE_GRACE_SECONDS ago still counts as live (two tabs
    refreshing at once, a retry after a lost response); spent longer ago, it is revoked.
    """
    if not payload.get("jti") or not payload.get("fam"):
        return None, True
    row = db.session.execute(
        _USER_AND_ENTRIES,
        {"user_id": user_id, "family": f"family:{payload['fam']}", "jti": payload["jti"]},
    ).first()
    if row is None:
        return None, False
    user, family_revoked, spent_at, *own = row
    keep_limits(user.id, own)
    if family_revoked:
        return user, True
    if spent_at is None:
        return user, False
    grace = current_app.config["REFRESH_REUSE_GRACE_SECONDS"]
    recently = spent_at >= clock.now() - timedelta(seconds=grace)
    return user, not (payload.get("type") == "refresh" and recently)
