"""Making, listing and revoking API keys. A key is `pgx_` and 43 random URL-safe characters,
shown once when it is made; the database keeps its SHA-256 and its first 12 characters."""

import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, or_, select

from .. import clock
from ..auth.access import KEY_PREFIX, digest
from ..errors import Conflict
from ..extensions import db
from ..models import ApiKey, User

PREFIX_LENGTH = 12


def _live(user_id: int):
    now = clock.now()
    return select(ApiKey).where(
        ApiKey.user_id == user_id, or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)
    )


def create_key(user: User, name: str, expires_in_days: int | None) -> tuple[ApiKey, str]:
    """A new key of `user` and its secret; a Conflict past API_KEYS_PER_USER live keys."""
    limit = current_app.config["API_KEYS_PER_USER"]
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    expires: datetime | None = now + timedelta(days=expires_in_days) if expires_in_days else None
    api_key = ApiKey(
        user_id=user.id,
        name=name,
        digest=digest(key),
        prefix=key[:PREFIX_LENGTH],
        created_at=now,
        expires_at=expires,
    )
    # Creations at once must not all slip under the limit, so the key is inserted first and the
    # user's live keys counted after, in the same transaction. On SQLite the insert takes the
    # database's one write lock, which the count then holds (a SELECT alone runs outside any
    # transaction there, and FOR UPDATE is ignored); on PostgreSQL, the user's row locked first
    # makes one user's creations take turns, each counting what the one before committed.
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    db.session.add(api_key)
    db.session.flush()
    live = db.session.scalar(select(func.count()).select_from(_live(user.id).subquery()))
    if live > limit:
        db.session.rollback()
        raise Conflict(f"You have {live - 1} live API keys already, the most allowed ({limit})")
    db.session.commit()
    return api_key, key


def live_keys(user_id: int | None = None) -> list[ApiKey]:
    """The live keys of one user, or of everyone, oldest first."""
    now = clock.now()
    statement = select(ApiKey).where(or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    if user_id is not None:
        statement = statement.where(ApiKey.user_id == user_id)
    return db.session.scalars(statement.order_by(ApiKey.id)).all()


def revoke_key(key_id: int, user_id: int | None = None) -> bool:
    """Revoke (delete) a key, of this user only when given; False if there was none."""
    statement = delete(ApiKey).where(ApiKey.id == key_id)
    if user_id is not None:
        statement = statement.where(ApiKey.user_id == user_id)
    gone = db.session.execute(statement).rowcount
    db.session.commit()
    return gone == 1


def revoke_all_keys(user_id: int) -> int:
    """Revoke (delete) every key of a user, expired ones too; how many there were."""
    gone = db.session.execute(delete(ApiKey).where(ApiKey.user_id == user_id)).rowcount
    db.session.commit()
    return gone


def revoked_notice(count: int) -> str:
    return f"Revoked {count} API key{'' if count == 1 else 's'}"
