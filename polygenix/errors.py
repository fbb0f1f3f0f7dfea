"""Every error answer: one JSON envelope, and every handler that makes one.

    {"code": 404, "status": "Not Found", "message": "...", "detail": "..."[, "errors": {...}]}

`detail` repeats `message` for the original's clients. HTTP errors (aborts, 404/405, 413, the
validation errors of flask-smorest), token failures (flask-jwt-extended's loaders), provider
failures, a conflict such as a taken email, a session or an account deleted under a turn, and
database or Redis outages all come through here; anything else is a 500 whose details go to
the log only.
"""

import logging
import math
from http import HTTPStatus

import marshmallow as ma
import redis
from flask import Flask, Response, g, has_request_context, jsonify, request
from flask_jwt_extended import JWTManager
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .extensions import db
from .providers import ProviderError
from .schema import NOT_MIGRATED, is_missing_schema

log = logging.getLogger(__name__)
# In `g`: the request's failure is the provider's, not PolyGenix's own (limits.py keeps its hits).
PROVIDER_FAILED = "provider_failed"


class ErrorSchema(ma.Schema):
    """The error envelope every error response uses (documentation only)."""

    code = ma.fields.Integer(metadata={"description": "HTTP status code"})
    status = ma.fields.String(metadata={"description": "HTTP status phrase"})
    message = ma.fields.String(metadata={"description": "What went wrong"})
    detail = ma.fields.String(metadata={"description": "Same as message (older clients read it)"})
    errors = ma.fields.Dict(metadata={"description": "Validation errors by location, then field"})


class Conflict(Exception):
    """What was asked clashes with what exists (an email already registered): a 409."""


class Refused(Exception):
    """A call the caller's limits do not allow: a model they may not use (403), a budget used
    up (429, with the seconds until it resets)."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.reason, self.retry_after = status, reason, retry_after


class SessionDeleted(LookupError):
    """The session of a turn under way was deleted before the turn could be stored: a 404."""

    status = 404

    def __init__(self, message: str = "Chat session not found"):
        super().__init__(message)


# A request's account deleted while it was served (see AccountDeleted).
ACCOUNT_GONE = "The account no longer exists"


class AccountDeleted(SessionDeleted):
    """The caller's account was deleted while their request was served, and every session of
    theirs with it: a 401, what every later request with their token or key gets."""

    status = 401

    def __init__(self, message: str = ACCOUNT_GONE):
        super().__init__(message)


def _summary(errors, prefix: str = "") -> list[str]:
    """Flatten webargs' nested validation errors into 'location.field: message' lines."""
    if isinstance(errors, dict):
        lines = []
        for key, value in errors.items():
            lines += _summary(value, f"{prefix}.{key}" if prefix else str(key))
        return lines
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return [f"{prefix}: {' '.join(errors)}" if prefix else " ".join(errors)]
    if isinstance(errors, list):
        return [line for e in errors for line in _summary(e, prefix)]
    return [f"{prefix}: {errors}"]


def envelope(code: int, message: str | None = None, errors: dict | None = None, **fields) -> dict:
    """The error body: {"code", "status", "message", "detail"[, "errors"]}, plus `fields`."""
    status = HTTPStatus(code).phrase
    if message is None:
        message = "Invalid input: " + "; ".join(_summary(errors)) if errors else status
    body = {"code": code, "status": status, "message": message, "detail": message} | fields
    if errors:
        body["errors"] = errors
    return body


# OpenAI's error types by status, for /v1 (https://platform.openai.com/docs/guides/error-codes).
OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
# A used-up budget is OpenAI's "insufficient_quota" (a 429 whose retry will not help); one taken
# by the user's calls in flight frees up as they end, a rate limit.
OPENAI_REFUSALS = {
    "token_budget": "insufficient_quota",
    "cost_budget": "insufficient_quota",
    "token_budget_reserved": "rate_limit_exceeded",
    "cost_budget_reserved": "rate_limit_exceeded",
}


def openai_path() -> bool:
    return has_request_context() and (request.path == "/v1" or request.path.startswith("/v1/"))


def openai_error(code: int, message: str | None, errors: dict | None, **fields) -> dict:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}; `param` names
    the first field a validation error is about."""
    param = fields.get("param")
    if param is None and errors:
        fields_by_location = next(iter(errors.values()))
        if isinstance(fields_by_location, dict) and fields_by_location:
            param = next(iter(fields_by_location))
    kind = OPENAI_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": envelope(code, message, errors)["message"],
            "type": kind,
            "param": param,
            "code": fields.get("error_code", OPENAI_CODES.get(code)),
        }
    }


def error_response(
    code: int,
    message: str | None = None,
    *,
    errors: dict | None = None,
    headers: dict | None = None,
    **fields,
) -> Response:
    """The envelope as a response, with WWW-Authenticate on 401s and any `headers`; on /v1,
    OpenAI's error shape instead (a validation error is OpenAI's 400 there)."""
    if openai_path():
        code = 400 if code == 422 else code
        response = jsonify(openai_error(code, message, errors, **fields))
    else:
        response = jsonify(envelope(code, message, errors, **fields))
    response.status_code = code
    if code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    response.headers.update(headers or {})
    return response


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """Retry-After in whole seconds, rounded up (none when unknown)."""
    return {"Retry-After": str(math.ceil(seconds))} if seconds is not None else {}


def http_error_response(error: HTTPException) -> Response:
    """Every HTTP error, aborts and validation failures included, in the envelope."""
    data = getattr(error, "data", None) or {}
    # Werkzeug's own headers (e.g. Allow on a 405) are kept; its HTML content type is not.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    if error.code == 304:  # Not Modified has no body
        return Response(status=304, headers=headers)
    errors = data.get("errors") or data.get("messages")
    message = data.get("message")
    if message is None and not errors:
        message = error.description
    return error_response(error.code or 500, message, errors=errors, headers=headers)


def provider_error_response(error: ProviderError) -> Response:
    if has_request_context():
        g.setdefault(PROVIDER_FAILED, True)
    headers = retry_after_header(error.retry_after)
    if error.status >= 500:
        # PolyGenix already retried it as the SDKs would (or it is no use retrying): a client
        # that retried too would multiply the provider calls, 3 attempts by 3.
        headers["x-should-retry"] = "false"
    return error_response(error.status, error.message, headers=headers)


def outage(error: Exception) -> tuple[int, str] | None:
    """The status and message for a failure of the database or of Redis, else None. A table or
    column that is missing is no outage but an un-migrated database: a 500 that says so."""
    if isinstance(error, redis.RedisError):
        return 503, "Shared state store unavailable"
    if isinstance(error, OperationalError | ProgrammingError) and is_missing_schema(error):
        return 500, NOT_MIGRATED
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
        # Lost connections, lock and statement timeouts, serialisation failures, a pool with no
        # free connection: worth a retry, not a 500.
        return 503, "Database unavailable"
    return None


def init_errors(app: Flask, jwt: JWTManager) -> None:
    """Register every handler: on the app, and as flask-jwt-extended's loaders."""

    @app.errorhandler(ProviderError)
    def _provider(error: ProviderError):
        return provider_error_response(error)

    @app.errorhandler(Refused)
    def _refused(error: Refused):
        headers = retry_after_header(error.retry_after)
        code = OPENAI_REFUSALS.get(error.reason, error.reason)
        if code == "insufficient_quota":
            # Hours, not seconds: OpenAI's SDKs would otherwise retry at once.
            headers["x-should-retry"] = "false"
        fields = {"error_code": code} if openai_path() else {}
        return error_response(error.status, str(error), headers=headers, **fields)

    @app.errorhandler(Conflict)
    def _conflict(error: Conflict):
        return error_response(409, str(error))

    @app.errorhandler(SessionDeleted)
    def _session_deleted(error: SessionDeleted):
        return error_response(error.status, str(error))

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(ProgrammingError)
    def _outage(error: Exception):
        if outage(error) is None:  # a ProgrammingError of another kind: a bug, a plain 500
            raise error
        code, message = outage(error)
        cause = getattr(error, "orig", None) or error
        app.logger.error("%s: %s", message, type(cause).__name__)
        if not isinstance(error, redis.RedisError):
            try:
                db.session.rollback()
            except Exception:  # the connection is gone: the teardown discards it
                log.debug("rollback after a database failure failed too", exc_info=True)
        return error_response(code, message, headers={"Retry-After": "1"} if code == 503 else {})

    @jwt.unauthorized_loader
    def _missing(reason):
        return error_response(401, "Not authenticated: send 'Authorization: Bearer <token>'")

    @jwt.invalid_token_loader
    def _invalid(reason):
        return error_response(401, f"Invalid token: {reason}")

    @jwt.expired_token_loader
    def _expired(_header, _payload):
        return error_response(401, "Token has expired")

    @jwt.user_lookup_error_loader
    def _no_user(_header, _payload):
        return error_response(401, "Token's user no longer exists")
