"""Prometheus metrics (prometheus_client) at GET /metrics.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py) puts every worker's samples in
files that /metrics sums, whichever worker answers. Every label value comes from a closed set,
whatever a client sends: endpoints are route templates (`unmatched` for any other path), methods
the HTTP methods the API knows (`other` for any other), models the provider's known list
(`other` for any other).
"""

import hmac
import os
import re
import time
from functools import cache

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .errors import error_response

REQUESTS = Counter(
    "polygenix_http_requests_total", "HTTP requests", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "polygenix_http_request_duration_seconds",
    "HTTP request latency",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROVIDER_CALLS = Counter(
    "polygenix_provider_calls_total", "Model provider calls", ["provider", "model", "outcome"]
)
PROVIDER_LATENCY = Histogram(
    "polygenix_provider_latency_seconds",
    "Model provider latency, request to last byte",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
TOKENS = Counter(
    "polygenix_tokens_total", "Tokens reported by providers", ["provider", "model", "direction"]
)
COST = Counter(
    "polygenix_cost_usd_total", "US dollars spent on priced replies", ["provider", "model"]
)
REFUSED = Counter(
    "polygenix_refused_requests_total",
    "Requests refused by a limit: model_not_allowed, token_budget, cost_budget, rate_limit",
    ["reason"],
)
REDIS_FALLBACKS = Counter(
    "polygenix_redis_fallbacks_total",
    "Operations done without Redis while it could not be reached",
    ["use"],
)
OPEN_STREAMS = Gauge(
    "polygenix_open_streams", "Streamed replies in progress", multiprocess_mode="livesum"
)

bp = Blueprint("metrics", __name__)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def model_label(provider, model: str | None) -> str:
    """The model as a label: one the provider lists, else "other" (users choose model names)."""
    return model if model in provider.settings.listed_models() else "other"


def record_provider_call(provider, model, outcome, seconds, prompt_tokens, completion_tokens):
    label = model_label(provider, model)
    PROVIDER_CALLS.labels(provider.name, label, outcome).inc()
    PROVIDER_LATENCY.labels(provider.name).observe(seconds)
    if prompt_tokens:
        TOKENS.labels(provider.name, label, "in").inc(prompt_tokens)
    if completion_tokens:
        TOKENS.labels(provider.name, label, "out").inc(completion_tokens)


def record_cost(provider, model: str | None, cost) -> None:
    if cost:
        COST.labels(provider.name, model_label(provider, model)).inc(float(cost))


@bp.get("/metrics")
def metrics():
    token = current_app.config["METRICS_TOKEN"]
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return error_response(401, "Send 'Authorization: Bearer <METRICS_TOKEN>'")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@cache
def _template(rule: str) -> str:
    """`/api/ai_chat/<int(min=1):chat_id>` -> `/api/ai_chat/{chat_id}`, as in the OpenAPI spec."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def init_metrics(app: Flask) -> None:
    if not app.config["METRICS_ENABLED"]:
        return
    app.register_blueprint(bp)

    @app.before_request
    def _start():
        g.started = time.perf_counter()

    @app.after_request
    def _count(response):
        if request.endpoint != "metrics.metrics" and "started" in g:
            endpoint = _template(request.url_rule.rule) if request.url_rule else "unmatched"
            method = request.method if request.method in METHODS else "other"
            REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
            LATENCY.labels(endpoint, method).observe(time.perf_counter() - g.started)
        return response
