"""The retry policy, as the official SDKs have it: at most `max_retries` more attempts on
retryable failures (connection errors, 408, 409, 429, 5xx, 529), waiting as the provider asks
(retry-after-ms, Retry-After, a wait in the body) or with jittered exponential backoff, never
longer than `max_retry_wait` and never past the call's deadline."""

import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from .base import ProviderError, ProviderSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_retries(settings: ProviderSettings, attempt: Callable[[float], T]) -> T:
    """Call `attempt(deadline)` until it succeeds, fails for good, or time runs out; the
    deadline (time.monotonic()) bounds the whole call, retries included."""
    deadline = time.monotonic() + settings.timeout
    backoff = wait_random_exponential(multiplier=0.5, max=settings.max_retry_wait)

    def wait(state) -> float:
        asked = state.outcome.exception().retry_after
        return min(asked, settings.max_retry_wait) if asked is not None else backoff(state)

    def before_sleep(state) -> None:
        log.warning(
            "%s attempt %d failed (%s); retrying in %.2f s",
            settings.name,
            state.attempt_number,
            state.outcome.exception().message,
            state.upcoming_sleep,
        )

    retrying = Retrying(
        stop=stop_after_attempt(settings.max_retries + 1) | stop_before_delay(settings.timeout),
        wait=wait,
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(attempt, deadline)


def retry_after(headers, asked_in_body: float | None) -> float | None:
    """Seconds the provider asks us to wait: retry-after-ms, Retry-After (seconds or a date),
    else what its body asked."""
    try:
        if headers.get("retry-after-ms"):
            return max(float(headers["retry-after-ms"]) / 1000, 0.0)
        if headers.get("retry-after"):
            value = headers["retry-after"]
            try:
                return max(float(value), 0.0)
            except ValueError:
                return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        pass
    return asked_in_body
