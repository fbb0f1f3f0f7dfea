"""Logging: one line per request (JSON when LOG_FORMAT=json), and X-Request-ID.

A request's line has its id, method, path, status, duration and user; a chat turn adds the
provider, model, token counts and provider latency. Never a password, token, key or message: the
line is built from those fields only; a path segment a route names as a secret (verify-token's
token) is replaced, and so is anything shaped like a token in a path no route matched. In the
text format every control character of every field is escaped, so no client can write a line
of its own (a `%0a` in a path).
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
# Route arguments that carry a credential: logged as [redacted].
SECRET_ARGUMENTS = frozenset({"token_id"})
# A JWT (three base64url parts, the first a JSON header) or a PolyGenix API key.
_TOKEN_SHAPE = re.compile(r"eyJ[\w-]*\.[\w-]*\.?[\w-]*|pgx_[\w-]+")
_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the backslash (so an
# escape in the log always means an escaped character, never one a client typed).
_CONTROL = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    if match.group() == "\\":
        return "\\\\"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` on one line: each control character written as its escape (`\\x0a`)."""
    return _CONTROL.sub(_escaped, text)


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
    """`<time> <level> <logger>: <message> key=value...`, one line whatever the values hold
    (a traceback, which only the server writes, follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(
            f"{k}={escape_controls(str(getattr(record, k)))}"
            for k in FIELDS
            if getattr(record, k, None) is not None
        )
        if not extra:
            return text
        line, newline, traceback = text.partition("\n")
        return f"{line} {extra}{newline}{traceback}"


def safe_path() -> str:
    """This request's path as logged: secret route arguments and token-shaped text removed."""
    rule, arguments = request.url_rule, request.view_args or {}
    if rule is not None and SECRET_ARGUMENTS & arguments.keys():

        def shown(match: re.Match) -> str:
            name = match.group(1)
            return "[redacted]" if name in SECRET_ARGUMENTS else str(arguments[name])

        return _ARGUMENT.sub(shown, rule.rule)
    return _TOKEN_SHAPE.sub("[redacted]", request.path)


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
                safe_path(),
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
