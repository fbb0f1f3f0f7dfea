"""The model catalogue: each provider's configured models, and what each configured provider
itself offers, asked of it at most every MODEL_LIST_TTL seconds.

The lists are cached in Redis when REDIS_URL is set (every worker and host shares them), else
in each process. Providers are asked all at once, each with a short timeout, so one that hangs
holds the catalogue up for LIST_TIMEOUT seconds at most; one that cannot be reached (or does
not answer in time) shows its configured models with `available: false` and the reason, its
failure cached for a shorter while. A provider that answers its model list with an error (many
OpenAI-compatible servers have no /models) keeps its configured models available. Ollama runs
beside PolyGenix: it counts as available only when it answered.
"""

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import redis
from flask import current_app

from .extensions import redis_client
from .metrics import REDIS_FALLBACKS
from .provider_registry import missing_variable, registry
from .providers import Provider, ProviderError

log = logging.getLogger(__name__)
LIST_TIMEOUT = 3.0
FAILURE_TTL = 60  # a provider that failed is asked again this soon (or at MODEL_LIST_TTL)
LOCAL = "polygenix.model_lists"
# Providers that run beside PolyGenix: no answer means not there.
LOCAL_PROVIDERS = {"ollama"}
UNREACHABLE = {503, 504}  # a ProviderError's status for "could not be reached", "too late"


def catalogue() -> list[dict[str, Any]]:
    """Every model entry: {id, provider, model, default, available, unavailable_reason}."""
    providers = registry()
    offered = _offers([providers[n] for n in providers if _asks(providers[n])])
    entries = []
    for name in providers:
        provider = providers[name]
        missing = missing_variable(provider)
        listed, failure, status = offered.get(name, ([], None, None))
        if missing is not None:
            available, reason = False, f"not configured: set {missing}"
        elif failure is not None and (status in UNREACHABLE or name in LOCAL_PROVIDERS):
            available, reason = False, failure
        else:
            available, reason = True, None
        default = provider.settings.default_model
        models = list(dict.fromkeys(provider.settings.listed_models() + listed)) or [None]
        for model in models:
            entries.append(
                {
                    "id": f"{name}/{model}" if model else name,
                    "provider": name,
                    "model": model,
                    "default": model is not None and model == default,
                    "available": available,
                    "unavailable_reason": reason,
                }
            )
    return entries


def _asks(provider: Provider) -> bool:
    """Whether to ask this provider for its models: it is configured and speaks HTTP."""
    return hasattr(provider, "list_models") and missing_variable(provider) is None


def _offers(providers: list[Provider]) -> dict[str, tuple[list[str], str | None, int | None]]:
    """Each provider's models, or why they are unknown and the failure's status, from the
    cache or asked now."""
    ttl = current_app.config["MODEL_LIST_TTL"]
    cache = _Cache(ttl)
    found: dict[str, tuple[list[str], str | None, int | None]] = {}
    missing = []
    for provider in providers:
        cached = cache.get(provider.name)
        if cached is None:
            missing.append(provider)
        else:
            found[provider.name] = cached
    if missing:
        pool = ThreadPoolExecutor(max_workers=len(missing), thread_name_prefix="model-lists")
        futures = {p.name: pool.submit(p.list_models, LIST_TIMEOUT) for p in missing}
        wait(futures.values(), timeout=LIST_TIMEOUT + 1)
        pool.shutdown(wait=False, cancel_futures=True)
        for name, future in futures.items():
            error = future.exception() if future.done() else None
            if not future.done():
                result = ([], f"{name} did not list its models in time", 504)
            elif isinstance(error, ProviderError):
                result = ([], error.message, error.status)
            elif error is not None:
                log.warning("listing %s's models failed: %r", name, error)
                result = ([], f"{name} could not list its models", 502)
            else:
                result = (future.result(), None, None)
            cache.put(name, result, ttl if result[1] is None else min(ttl, FAILURE_TTL))
            found[name] = result
    return found


class _Cache:
    """Model lists in Redis (shared), or in this process when there is no Redis or it is
    unreachable."""

    def __init__(self, ttl: int):
        self.ttl = ttl
        self.redis = redis_client()
        self.local: dict[str, tuple[float, tuple]] = current_app.extensions.setdefault(LOCAL, {})
        self.prefix = current_app.config["REDIS_KEY_PREFIX"] + "models:"

    def get(self, name: str) -> tuple | None:
        if self.ttl <= 0:
            return None
        if self.redis is not None:
            try:
                raw = self.redis.get(self.prefix + name)
                return None if raw is None else tuple(json.loads(raw))
            except redis.RedisError:
                REDIS_FALLBACKS.labels("model_list").inc()
        expires, value = self.local.get(name, (0.0, None))
        return value if expires > time.monotonic() else None

    def put(self, name: str, value: tuple, ttl: int) -> None:
        if ttl <= 0:
            return
        if self.redis is not None:
            try:
                self.redis.set(self.prefix + name, json.dumps(value), ex=ttl)
                return
            except redis.RedisError:
                REDIS_FALLBACKS.labels("model_list").inc()
        self.local[name] = (time.monotonic() + ttl, value)
