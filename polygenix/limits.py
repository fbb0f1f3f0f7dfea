"""Rate limits: LOGIN_RATE_LIMIT per client IP on login and account creation, per account on
account creation, and per account on every password check (logins and password changes share
one count); CHAT_RATE_LIMIT per user on chat requests. Over the limit: 429 in the error envelope
with Retry-After.

The `limits` library counts them in fixed windows: in Redis when REDIS_URL is set, otherwise in
the database. Either way every worker and host that shares it shares the counts, so a limit is
exact however many workers there are. While Redis cannot be reached, each process counts in its
own memory (limits' MemoryStorage) rather than refusing every request: a warning is logged when
that starts, and polygenix_redis_fallbacks_total counts the hits so counted. Redis is tried
again every REDIS_RETRY_SECONDS however busy the process is (by the first hit or /readyz probe
due), and /readyz says "degraded" until the limits are shared again.

In the database, a chat request's hit (CHAT_RATE_LIMIT) is counted in the request's own first
commit rather than a transaction of its own: every chat endpoint commits before it calls a
provider (no connection is held across a call), so the count is checked, under the row's lock,
before any call, and a turn pays one upsert where it paid a transaction. Over the limit, that
commit raises the 429 and nothing of its transaction is kept. On PostgreSQL a preparation reads
in autocommit (chat/prepare.py): its commit then sends the upsert alone, a transaction of that
one statement, and a hit over the limit stays counted, as Redis counts one. A request that
ends without a commit (refused on the way) has its hit counted as it ends. Login limits count
at once, in a transaction of their own: a failed login writes nothing else.

A request that PolyGenix itself fails (a 5xx of its own: the database or Redis unavailable, no
password-check slot free, a bug) gives its hits back: a caller never loses part of a limit to the
server's failures. A provider's failure (a 502, 503 or 504 passed on from it) stays counted: the
provider was called.
"""

import contextlib
import hashlib
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, wraps

import redis
from flask import Flask, Response, current_app, g, has_app_context, request
from flask_smorest import abort
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import bindparam, case, delete, event, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import clock
from .auth.access import current_user
from .config import ConfigError
from .errors import PROVIDER_FAILED
from .extensions import REDIS, db
from .metrics import REDIS_FALLBACKS, REFUSED
from .models import RateLimitCount, normalize_email

log = logging.getLogger(__name__)
EXTENSION = "polygenix.limits"
REDIS_RETRY_SECONDS = 5
SETTINGS = ("LOGIN_RATE_LIMIT", "CHAT_RATE_LIMIT")
HITS = "limit_hits"  # in `g`: the hits this request made, to give back if it fails
# In `g`: hits to count in the database in the request's first commit, (limit, identifiers).
PENDING = "limit_pending"


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
        count = self.count(key, expiry, amount)
        db.session.commit()
        return count

    def count(self, key: str, expiry: float, amount: int = 1) -> int:
        """`amount` hits on `key`'s window in the current transaction (not committed here): its
        count with them. The row stays locked (PostgreSQL; on SQLite the database's write lock
        is taken) until the caller's transaction ends, so counts stay exact across workers."""
        now = clock.timestamp()
        values = {"key": self._digest(key), "amount": amount, "now": now, "ends": now + expiry}
        count = db.session.execute(self._upsert(db.engine.dialect.name), values).scalar_one()
        if now >= self._sweep_at:
            self._sweep_at = now + self._sweep_every
            db.session.execute(delete(self.table).where(self.table.c.expires_at < now))
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

    def decr(self, key: str, amount: int = 1) -> None:
        """Give back `amount` hits of a window still open (never below zero).

        Called as a failed request ends: its own unfinished work is rolled back first, as the
        request's teardown would.
        """
        c = self.table.c
        db.session.rollback()
        db.session.execute(
            update(self.table)
            .where(c.key == self._digest(key), c.count >= amount)
            .where(c.expires_at > clock.timestamp())
            .values(count=c.count - amount)
        )
        db.session.commit()


class SharedCounts(RedisStorage):
    """limits' Redis storage, able to give a hit back."""

    STORAGE_SCHEME = None  # made directly, never from a URI
    # Only a window still open is decremented, never below zero: DECRBY on a missing key would
    # make one with no expiry.
    GIVE_BACK = """
    local count = tonumber(redis.call("get", KEYS[1]) or "0")
    if count >= tonumber(ARGV[1]) then
        return redis.call("decrby", KEYS[1], ARGV[1])
    end
    return count
    """

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_give_back = self.get_connection().register_script(self.GIVE_BACK)

    def decr(self, key: str, amount: int = 1) -> None:
        self.lua_give_back([self.prefixed_key(key)], [amount])


class NotShared(Exception):
    """Rate limits are counted in this process only (Redis was unreachable at the last try)."""


@dataclass
class _Counter:
    strategy: FixedWindowRateLimiter
    prefix: str
    limits: dict[str, list[RateLimitItem]]  # by setting name
    # While Redis is out of reach: this process's own counts.
    fallback: FixedWindowRateLimiter = field(
        default_factory=lambda: FixedWindowRateLimiter(MemoryStorage())
    )
    degraded: bool = False
    retry_at: float = 0.0  # clock.timestamp() when Redis is tried again
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _try_shared(self, now: float) -> bool:
        """Whether to count in the shared store now: always while it answers; while it does
        not, once every REDIS_RETRY_SECONDS, by whichever caller comes first after that (the
        others meanwhile count here rather than each wait for an unreachable Redis)."""
        if not self.degraded:
            return True
        with self._lock:
            if now < self.retry_at:
                return False
            self.retry_at = now + REDIS_RETRY_SECONDS
            return True

    def _failed(self, error: Exception, now: float) -> None:
        with self._lock:
            self.retry_at = now + REDIS_RETRY_SECONDS
            if self.degraded:
                return
            self.degraded = True
        log.warning(
            "Redis unavailable (%s): rate limits are counted per process until it is back",
            type(error).__name__,
        )

    def _answered(self) -> None:
        if self.degraded:
            self.degraded = False
            log.warning("Redis is back: rate limits are shared again")

    def hit(self, limit: RateLimitItem, *identifiers: str) -> tuple[FixedWindowRateLimiter, bool]:
        """Count one hit: the limiter that counted it, and whether it is allowed."""
        now = clock.timestamp()
        if self._try_shared(now):
            try:
                allowed = self.strategy.hit(limit, *identifiers)
            except redis.RedisError as e:
                self._failed(e, now)
            else:
                self._answered()
                return self.strategy, allowed
        REDIS_FALLBACKS.labels("rate_limit").inc()
        return self.fallback, self.fallback.hit(limit, *identifiers)

    def probe(self, now: float) -> None:
        """For /readyz: return if the limits are shared; while they are not, try Redis when a
        try is due (so a process with no limited traffic comes back too), else raise
        NotShared."""
        if not self.degraded:
            return
        if self._try_shared(now):
            try:
                self.strategy.storage.get_connection().ping()
            except redis.RedisError as e:
                self._failed(e, now)
            else:
                self._answered()
                return
        raise NotShared()


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
        storage = SharedCounts("redis://", connection_pool=redis.connection_pool)
    else:
        storage = DatabaseCounts()
    prefix = config.setdefault("RATELIMIT_KEY_PREFIX", config["REDIS_KEY_PREFIX"] + "limits")
    app.extensions[EXTENSION] = _Counter(FixedWindowRateLimiter(storage), prefix, limits)
    app.after_request(_settle)
    if not event.contains(Session, "before_commit", _count_pending):
        event.listen(Session, "before_commit", _count_pending)


def counter() -> _Counter | None:
    """The app's rate-limit counter (None when limits are off)."""
    return current_app.extensions.get(EXTENSION)


def _count_pending(session: Session) -> None:
    """Before a request's first commit: its pending hits, counted in that transaction; over a
    limit, a 429 instead of the commit (and nothing of the transaction is kept)."""
    if not has_app_context() or not g.get(PENDING) or session is not db.session():
        return
    counter: _Counter = current_app.extensions[EXTENSION]
    pending, over = g.pop(PENDING), None
    counted = []
    for limit, identifiers in pending:
        count = counter.strategy.storage.count(limit.key_for(*identifiers), limit.get_expiry())
        counted.append((counter.strategy, limit, identifiers))
        if count > limit.amount and over is None:
            over = limit, identifiers
    if over is None:
        g.setdefault(HITS, []).extend(counted)
        return
    _refuse(counter.strategy, *over)


def _settle(response: Response) -> Response:
    """As a request ends: hits still pending (no commit came) are counted now, in a transaction
    of their own, unless PolyGenix failed the request; then a request PolyGenix failed gives
    back the hits it made."""
    pending = g.pop(PENDING, None)
    if pending and (response.status_code < 500 or g.get(PROVIDER_FAILED)):
        storage = current_app.extensions[EXTENSION].strategy.storage
        try:
            db.session.rollback()  # what the request left unfinished is not kept by its end
            for limit, identifiers in pending:
                storage.count(limit.key_for(*identifiers), limit.get_expiry())
            db.session.commit()
        except Exception as e:  # the database that failed the request may fail this too
            log.warning("A request's rate-limit hit was not counted: %s", type(e).__name__)
            with contextlib.suppress(SQLAlchemyError):  # gone meanwhile: the teardown discards it
                db.session.rollback()
    return _give_back_if_failed(response)


def _give_back_if_failed(response: Response) -> Response:
    """A request PolyGenix failed (a 5xx of its own, not a provider's) gives its hits back."""
    hits = g.pop(HITS, [])
    if response.status_code < 500 or g.get(PROVIDER_FAILED):
        return response
    for limiter, limit, identifiers in hits:
        try:
            limiter.storage.decr(limit.key_for(*identifiers))
        except Exception as e:  # the store that failed the request may fail this too
            log.warning(
                "A failed request's rate-limit hit was not given back: %s", type(e).__name__
            )
    return response


def _refuse(limiter: FixedWindowRateLimiter, limit: RateLimitItem, identifiers) -> None:
    reset = limiter.get_window_stats(limit, *identifiers).reset_time
    REFUSED.labels("rate_limit").inc()
    abort(
        429,
        message=f"Too many requests: at most {limit}",
        headers={"Retry-After": str(max(math.ceil(reset - clock.timestamp()), 1))},
    )


def _check(setting: str, scope: str, key: str, *, at_commit: bool = False) -> None:
    """One hit of `setting`'s limits on the count of (scope, key); a 429 over one. With
    `at_commit`, a hit counted in the database waits for the request's first commit."""
    counter: _Counter | None = current_app.extensions[EXTENSION]
    if counter is None:
        return
    identifiers = (counter.prefix, scope, key)
    if at_commit and isinstance(counter.strategy.storage, DatabaseCounts):
        g.setdefault(PENDING, []).extend((limit, identifiers) for limit in counter.limits[setting])
        return
    for limit in counter.limits[setting]:
        limiter, allowed = counter.hit(limit, *identifiers)
        g.setdefault(HITS, []).append((limiter, limit, identifiers))
        if not allowed:
            _refuse(limiter, limit, identifiers)


def _limited(setting: str, key: Callable[[], str], *, at_commit: bool = False):
    """A view decorator: one hit of `setting`'s limits on this endpoint's count `key()` names
    (with `at_commit`, counted in the request's first commit when the count is in the
    database: for views that commit before any slow work)."""

    def decorator(view):
        @wraps(view)
        def limited(*args, **kwargs):
            _check(setting, request.endpoint or "", key(), at_commit=at_commit)
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


# CHAT_RATE_LIMIT for one user; apply inside login_required so the user is known. Every chat
# endpoint commits before it calls a provider: its hit is counted in that commit.
per_user = _limited("CHAT_RATE_LIMIT", _user, at_commit=True)
