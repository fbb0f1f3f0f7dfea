"""Rate limits: LOGIN_RATE_LIMIT per client IP on login and account creation, per account on
account creation, and per account on every password check (logins and password changes share
one count); CHAT_RATE_LIMIT per user on chat requests. Over the limit: 429 in the error envelope
with Retry-After.

The `limits` library counts them in fixed windows: in Redis when REDIS_URL is set, otherwise in
the database. Either way every worker and host that shares it shares the counts, so a limit is
exact however many workers there are. While Redis cannot be reached, each process counts in its
own memory (limits' MemoryStorage) rather than refusing every request: a warning is logged when
that starts, and polygenix_redis_fallbacks_total counts the hits so counted.
"""

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, wraps

import redis
from flask import Flask, current_app, request
from flask_smorest import abort
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import bindparam, case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from . import clock
from .auth.access import current_user
from .config import ConfigError
from .extensions import REDIS, db
from .metrics import REDIS_FALLBACKS, REFUSED
from .models import RateLimitCount, normalize_email

log = logging.getLogger(__name__)
EXTENSION = "polygenix.limits"
REDIS_RETRY_SECONDS = 5
SETTINGS = ("LOGIN_RATE_LIMIT", "CHAT_RATE_LIMIT")


class DatabaseCounts(Storage):
    """Fixed-window counts in the `rate_limit_counts` table, for when there is no Redis.

    One upsert per hit, committed in the request's database session (limits are checked before
    a view does any work of its own). Ended windows are deleted every `sweep_every` seconds.
    Keys are stored as their SHA-256: they hold what clients send (an email), of any length and
    with any character.
    """

    STORAGE_SCHEME = None  # made directly, never from a URI
    base_exceptions = SQLAlchemyError
    table = RateLimitCount.__table__

    def __init__(self, sweep_every: float = 60):
        super().__init__()
        self._sweep_every = sweep_every
        self._sweep_at = 0.0

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = clock.timestamp()
        values = {"key": self._digest(key), "amount": amount, "now": now, "ends": now + expiry}
        count = db.session.execute(self._upsert(db.engine.dialect.name), values).scalar_one()
        if now >= self._sweep_at:
            self._sweep_at = now + self._sweep_every
            db.session.execute(delete(self.table).where(self.table.c.expires_at < now))
        db.session.commit()
        return count

    @classmethod
    @cache
    def _upsert(cls, dialect: str):
        """The hit, built once per dialect (building it cost as much as running it)."""
        c = cls.table.c
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        ended = c.expires_at <= bindparam("now")  # in ON CONFLICT ... SET, `c` is the old row
        amount = bindparam("amount")
        return (
            insert(cls.table)
            .values(key=bindparam("key"), count=amount, expires_at=bindparam("ends"))
            .on_conflict_do_update(
                index_elements=[c.key],
                set_={
                    "count": case(
                        (ended, bindparam("amount")), else_=c.count + bindparam("amount")
                    ),
                    "expires_at": case((ended, bindparam("ends")), else_=c.expires_at),
                },
            )
            .returning(c.count)
        )

    def _row(self, key: str):
        return db.session.execute(
            select(self.table.c.count, self.table.c.expires_at).where(
                self.table.c.key == self._digest(key)
            )
        ).first()

    def get(self, key: str) -> int:
        row = self._row(key)
        return row.count if row is not None and row.expires_at > clock.timestamp() else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return max(row.expires_at if row is not None else 0.0, clock.timestamp())

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        cleared = db.session.execute(delete(self.table)).rowcount
        db.session.commit()
        return cleared

    def clear(self, key: str) -> None:
        db.session.execute(delete(self.table).where(self.table.c.key == self._digest(key)))
        db.session.commit()


@dataclass
class _Counter:
    strategy: FixedWindowRateLimiter
    prefix: str
    limits: dict[str, list[RateLimitItem]]  # by setting name
    # While Redis is out of reach: this process's own counts.
    fallback: FixedWindowRateLimiter | None = None
    degraded: bool = False
    retry_at: float = 0.0  # time.monotonic() when Redis is tried again

    def hit(self, limit: RateLimitItem, *identifiers: str) -> FixedWindowRateLimiter | None:
        """None if the hit is allowed, else the limiter that refused it (for its window)."""
        try:
            if self.degraded and time.monotonic() < self.retry_at:
                # Asked again only now and then: an unreachable Redis costs its timeout.
                raise redis.ConnectionError("not retried yet")
            allowed = self.strategy.hit(limit, *identifiers)
            if self.degraded:
                self.degraded = False
                log.warning("Redis is back: rate limits are shared again")
            return None if allowed else self.strategy
        except redis.RedisError as e:
            if not self.degraded:
                self.degraded = True
                log.warning(
                    "Redis unavailable (%s): rate limits are counted per process until it is back",
                    type(e).__name__,
                )
            self.retry_at = time.monotonic() + REDIS_RETRY_SECONDS
            REDIS_FALLBACKS.labels("rate_limit").inc()
            if self.fallback is None:
                self.fallback = FixedWindowRateLimiter(MemoryStorage())
            return None if self.fallback.hit(limit, *identifiers) else self.fallback


def init_limits(app: Flask) -> None:
    """Parse the limits (a malformed one stops the app here, not each request later) and choose
    where they are counted."""
    config = app.config
    if not config["RATELIMIT_ENABLED"]:
        app.extensions[EXTENSION] = None
        return
    limits = {}
    for name in SETTINGS:
        try:
            limits[name] = parse_many(config[name])
        except ValueError:
            raise ConfigError(
                f"{name} must be a rate such as 10/minute or 10/minute;100/hour, "
                f"got {config[name]!r}"
            ) from None
    redis = app.extensions[REDIS]
    if redis is not None:
        # Given a pool, limits uses the URI only to choose Redis over Valkey.
        storage = RedisStorage("redis://", connection_pool=redis.connection_pool)
    else:
        storage = DatabaseCounts()
    prefix = config.setdefault("RATELIMIT_KEY_PREFIX", config["REDIS_KEY_PREFIX"] + "limits")
    app.extensions[EXTENSION] = _Counter(FixedWindowRateLimiter(storage), prefix, limits)


def _check(setting: str, scope: str, key: str) -> None:
    counter: _Counter | None = current_app.extensions[EXTENSION]
    if counter is None:
        return
    identifiers = (counter.prefix, scope, key)
    for limit in counter.limits[setting]:
        refused_by = counter.hit(limit, *identifiers)
        if refused_by is not None:
            reset = refused_by.get_window_stats(limit, *identifiers).reset_time
            REFUSED.labels("rate_limit").inc()
            abort(
                429,
                message=f"Too many requests: at most {limit}",
                headers={"Retry-After": str(max(math.ceil(reset - clock.timestamp()), 1))},
            )


def _limited(setting: str, key: Callable[[], str]):
    """A view decorator: one hit of `setting`'s limits on this endpoint's count `key()` names."""

    def decorator(view):
        @wraps(view)
        def limited(*args, **kwargs):
            _check(setting, request.endpoint or "", key())
            return view(*args, **kwargs)

        return limited

    return decorator


def _client() -> str:
    # The peer's address; behind a trusted proxy (PROXY_FIX_X_FOR), the client it names.
    return f"ip:{request.remote_addr}"


def _new_account() -> str:
    """The account a sign-up is for (the JSON email)."""
    body = request.get_json(silent=True)
    email = body.get("email", "") if isinstance(body, dict) else ""
    return "account:" + normalize_email(str(email))


def _user() -> str:
    return f"user:{current_user.id}"


# LOGIN_RATE_LIMIT from one client IP.
per_ip = _limited("LOGIN_RATE_LIMIT", _client)


def per_ip_and_account(view):
    """LOGIN_RATE_LIMIT from one client IP, and for one new account from anywhere."""
    return per_ip(_limited("LOGIN_RATE_LIMIT", _new_account)(view))


def password_attempt(email: str) -> None:
    """Count a password check for the account `email`; 429 past LOGIN_RATE_LIMIT.

    Logins and password changes share the count, so no route guesses faster than another.
    """
    _check("LOGIN_RATE_LIMIT", "password", "account:" + normalize_email(email))


# CHAT_RATE_LIMIT for one user; apply inside login_required so the user is known.
per_user = _limited("CHAT_RATE_LIMIT", _user)
