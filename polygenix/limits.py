"""Rate limits (flask-limiter): LOGIN_RATE_LIMIT per client IP and per account on login and
account creation, CHAT_RATE_LIMIT per user on chat requests. Over the limit: 429 in the error
envelope with Retry-After.
"""

import math
import time

from flask import current_app, request
from flask_jwt_extended import get_jwt_identity
from flask_limiter import RateLimitExceeded

from .api import error_response
from .extensions import limiter
from .models import normalize_email


def _setting(name: str):
    return lambda: current_app.config[name]


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
    view = limiter.limit(_setting("LOGIN_RATE_LIMIT"), key_func=_account)(view)
    return limiter.limit(_setting("LOGIN_RATE_LIMIT"))(view)


def per_user(view):
    """CHAT_RATE_LIMIT for one user; apply inside login_required so the user is known."""
    return limiter.limit(_setting("CHAT_RATE_LIMIT"), key_func=_user)(view)


def rate_limited(error: RateLimitExceeded):
    """429 in the envelope, with Retry-After: seconds until the exceeded window resets.

    (flask-limiter's own headers are off: it would put Retry-After on every response.)
    """
    limit = limiter.current_limit
    wait = math.ceil(limit.reset_at - time.time()) if limit else 60
    return error_response(
        429,
        f"Too many requests: at most {error.description}",
        headers={"Retry-After": str(max(wait, 1))},
    )
