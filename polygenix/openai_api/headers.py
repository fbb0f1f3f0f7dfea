"""What a /v1 call says in its headers, for every endpoint that stores a turn: the session it
goes in (`X-PolyGenix-Session`) and the key its client's retries share."""

import hashlib
import re
from functools import wraps

from flask import current_app, request

from ..models import MAX_ID
from .schemas import invalid

SESSION_HEADER = "X-PolyGenix-Session"
_NUMBER = re.compile(r"[0-9]{1,10}")


def inline_images(view):
    """A view decorator, outside the authentication (which reads a turn's body before the
    caller's lookup): images come inline (base64), so a body may be as large as
    V1_MAX_BODY_BYTES, more than other requests' MAX_CONTENT_LENGTH."""

    @wraps(view)
    def larger(*args, **kwargs):
        config = current_app.config
        request.max_content_length = max(config["MAX_CONTENT_LENGTH"], config["V1_MAX_BODY_BYTES"])
        return view(*args, **kwargs)

    return larger


def session_number() -> int | None:
    raw = request.headers.get(SESSION_HEADER)
    if raw is None:
        return None
    # ASCII digits only: str.isdigit() also takes ², which int() refuses, and int() takes
    # Arabic-Indic and other digits a client surely did not mean.
    if not _NUMBER.fullmatch(raw.strip()) or not 1 <= int(raw) <= MAX_ID:
        invalid(SESSION_HEADER, f"{SESSION_HEADER} must be a session number, 1 to {MAX_ID}.")
    return int(raw)


def retry_key(user_id: int) -> tuple[str | None, bool]:
    """The key a call keeps for its retries, and whether this call is a retry.

    A client's `Idempotency-Key` is the same on every attempt of one call, each sending the
    same body: the key and the body's bytes stand for the call, so a key reused for another
    body is another call, never answered with the first one's answer. Without a key, the
    official SDKs resend the very same body, counting their attempts in
    `X-Stainless-Retry-Count`: the body's digest then stands for the call, and a count above 0
    makes it a retry. Other requests are not matched with earlier ones."""
    given = request.headers.get("Idempotency-Key")
    if given:
        material = f"{user_id}\x1fkey\x1f{given}\x1f".encode() + request.get_data()
        return hashlib.sha256(material).hexdigest(), True
    attempt = request.headers.get("X-Stainless-Retry-Count")
    if attempt is None:
        return None, False
    material = f"{user_id}\x1fbody\x1f".encode() + request.get_data()
    return hashlib.sha256(material).hexdigest(), attempt.strip() not in ("", "0")
