"""Rate limits: LOGIN_RATE_LIMIT per client IP and per account on login and account creation,
CHAT_RATE_LIMIT per user on chat requests, each endpoint counted apart. Over the limit: 429 in
the error envelope with Retry-After.

The `limits` library counts them in fixed windows: in Redis when REDIS_URL is set (one count for
every worker and host, through the app's own Redis pool), otherwise in this process's memory.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from flask import Flask, current_app, request
from flask_jwt_extended import get_jwt_identity
from flask_smorest import abort
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from config import ConfigError

from .extensions import REDIS
from .models import normalize_email

EXTENSION = "polygenix.limits"
SETTINGS = ("LOGIN_RATE_LIMIT", "CHAT_RATE_LIMIT")


class ProcessCounts(Storage):
    """Fixed-window counts in this process's memory, for when there is no Redis.

    limits' own MemoryStorage starts a thread to expire counts 10 ms after a hit, so a request
    to a quiet server waited for a thread to start (~0.5 ms). Here a count past its window reads
    as zero, and expired ones are dropped every `sweep_every` seconds, on a hit.
    """

    STORAGE_SCHEME = None  # made directly, never from a URI
    base_exceptions = ValueError

    def __init__(self, sweep_every: float = 60):
        super().__init__()
        self._counts: dict[str, tuple[int, float]] = {}  # key: (count, window's end)
        self._lock = threading.Lock()
        self._sweep_every = sweep_every
        self._sweep_at = time.time() + sweep_every

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            if now >= self._sweep_at:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
                self._sweep_at = now + self._sweep_every
            count, ends = self._counts.get(key, (0, now))
            if ends <= now:
                count, ends = 0, now + expiry
            self._counts[key] = (count + amount, ends)
            return count + amount

    def get(self, key: str) -> int:
        count, ends = self._counts.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        return max(self._counts.get(key, (0, 0.0))[1], time.time())

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self._lock:
            cleared = len(self._counts)
            self._counts.clear()
        return cleared

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


@dataclass(frozen=True)
class _Counter:
    strategy: FixedWindowRateLimiter
    prefix: str
    limits: dict[str, list[RateLimitItem]]  # by setting name


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
        storage = ProcessCounts()
        if config["POLYGENIX_ENV"] == "production":
            app.logger.warning(
                "REDIS_URL is not set: rate limits are counted per process, so each worker "
                "allows the full rate"
            )
    prefix = config.setdefault("RATELIMIT_KEY_PREFIX", config["REDIS_KEY_PREFIX"] + "limits")
    app.extensions[EXTENSION] = _Counter(FixedWindowRateLimiter(storage), prefix, limits)


def _check(setting: str, key: str) -> None:
    counter: _Counter | None = current_app.extensions[EXTENSION]
    if counter is None:
        return
    scope = (counter.prefix, request.endpoint or "", key)
    for limit in counter.limits[setting]:
        if not counter.strategy.hit(limit, *scope):
            reset = counter.strategy.get_window_stats(limit, *scope).reset_time
            abort(
                429,
                message=f"Too many requests: at most {limit}",
                headers={"Retry-After": str(max(math.ceil(reset - time.time()), 1))},
            )


def _limited(setting: str, key: Callable[[], str]):
    """A view decorator: one hit of `setting`'s limits on the count `key()` names."""

    def decorator(view):
        @wraps(view)
        def limited(*args, **kwargs):
            _check(setting, key())
            return view(*args, **kwargs)

        return limited

    return decorator


def _client() -> str:
    # The peer's address; behind a trusted proxy (PROXY_FIX_X_FOR), the client it names.
    return f"ip:{request.remote_addr}"


def _account() -> str:
    """The account a login or sign-up is for (the form's username, or the JSON email)."""
    if request.form:
        email = request.form.get("username", "")
    else:
        body = request.get_json(silent=True)
        email = body.get("email", "") if isinstance(body, dict) else ""
    return "account:" + normalize_email(str(email))


def _user() -> str:
    return f"user:{get_jwt_identity()}"


def per_ip_and_account(view):
    """LOGIN_RATE_LIMIT from one client IP, and for one account from anywhere."""
    return _limited("LOGIN_RATE_LIMIT", _client)(_limited("LOGIN_RATE_LIMIT", _account)(view))


# CHAT_RATE_LIMIT for one user; apply inside login_required so the user is known.
per_user = _limited("CHAT_RATE_LIMIT", _user)
