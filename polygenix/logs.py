"""Logging: one line per request (JSON when LOG_FORMAT=json), and X-Request-ID.

A request's line has its id, method, path, status, duration and user; a chat turn adds the
provider, model, token counts and provider latency. Never a password, token, key or message: the
line is built from those fields only, and verify-token's path segment (a token) is replaced.
"""

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from functools import partial

from flask import Flask, g, has_request_context, request

log = logging.getLogger("polygenix.request")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
FIELDS = (
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "user_id",
    "provider",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "provider_latency_ms",
    "outcome",
)
_HANDLER_MARK = "_polygenix_handler"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, and the request fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(
            f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None
        )
        return f"{text} {extra}" if extra else text


def safe_path(path: str) -> str:
    """The path as logged: a token in verify-token's path is not written down."""
    if path.startswith("/api/auth/verify-token/"):
        return "/api/auth/verify-token/[redacted]"
    return path


def request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def note(**fields) -> None:
    """Add fields (provider, model, tokens...) to this request's log line."""
    if has_request_context():
        g.setdefault("log_fields", {}).update(fields)


def init_logging(app: Flask) -> None:
    logger = logging.getLogger("polygenix")
    logger.setLevel(app.config["LOG_LEVEL"])
    if not any(getattr(h, _HANDLER_MARK, False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        logger.addHandler(handler)
    for handler in logger.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setFormatter(
                JSONFormatter()
                if app.config["LOG_FORMAT"] == "json"
                else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )

    @app.before_request
    def _begin():
        sent = request.headers.get("X-Request-ID", "")
        g.request_id = sent if REQUEST_ID.match(sent) else uuid.uuid4().hex
        g.log_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if "log_started" in g and request.endpoint not in ("metrics.metrics", "health.healthz"):
            write = partial(
                _write_line,
                g._get_current_object(),
                request.method,
                safe_path(request.path),
                response.status_code,
            )
            if response.is_streamed:
                # Written when the body has been sent: a streamed reply's duration is the whole
                # stream's, and the provider's fields are noted while it runs.
                response.call_on_close(write)
            else:
                write()
        return response


def _write_line(request_g, method: str, path: str, status: int) -> None:
    log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "request_id": request_g.request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - request_g.log_started) * 1000, 2),
            "user_id": request_g.get("user_id"),
        }
        | request_g.get("log_fields", {}),
    )
