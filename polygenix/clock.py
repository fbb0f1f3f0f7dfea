"""The time as PolyGenix reads it: real time, unless the app was given a clock (tests).

Token rotation's grace window, database-counted rate limits and other time rules read it here,
so a test moves time forward instead of sleeping.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app, has_app_context

CLOCK = "CLOCK"  # a config key: a callable returning seconds since the epoch, like time.time


def timestamp() -> float:
    """Seconds since the epoch."""
    clock: Callable[[], float] | None = current_app.config.get(CLOCK) if has_app_context() else None
    return clock() if clock is not None else time.time()


def now() -> datetime:
    """The current time in UTC."""
    return datetime.fromtimestamp(timestamp(), UTC)
