"""Issuing and checking JWTs, and turning every token failure into a 401 envelope."""

import uuid
from functools import cache

from flask import current_app, g
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError
from werkzeug.security import check_password_hash, generate_password_hash

from ..api import error_response
from ..extensions import db
from ..models import User
from ..user.service import find_by_email
from .revocation import revoke_family, user_and_revocation


def issue_tokens(user: User, family: str | None = None) -> dict:
    """An access and a refresh token: the original's two fields plus refresh_token, expires_in.

    Every token carries the user's token version (`ver`: a password change or reset bumps it and
    so revokes all earlier tokens) and its family (`fam`: one per login, kept by refreshes).
    """
    claims = {"ver": user.token_version, "fam": family or str(uuid.uuid4())}
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": create_access_token(str(user.id), additional_claims=claims),
        "token_type": "bearer",
        "expires_in": int(expires.total_seconds()),
        "refresh_token": create_refresh_token(str(user.id), additional_claims=claims),
    }


def token_revoked(payload: dict) -> bool:
    """Revoked by logout, by refresh-token reuse, or by a later password change.

    The user found on the way is kept for the user lookup that follows on this request.
    """
    user_id = _user_id(payload.get("sub"))
    if user_id is None:
        return True
    user, revoked = user_and_revocation(payload, user_id)
    g.token_user = user
    return revoked or (user is not None and payload.get("ver") != user.token_version)


@cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash("not a real password", method=method)


def authenticate(email: str, password: str) -> User | None:
    """The user whose email and password these are, or None.

    An unknown email still costs one password check: it takes as long as a wrong password.
    """
    method = current_app.config["PASSWORD_HASH_METHOD"]
    user = find_by_email(email)
    if user is None:
        check_password_hash(_dummy_hash(method), password)
        return None
    if not user.verify_password(password):
        return None
    # A hash made with weaker settings than today's is replaced while the password is at hand.
    if user.password_hash.split("$", 1)[0] != _dummy_hash(method).split("$", 1)[0]:
        user.password = password
        db.session.commit()
    return user


def valid_payload(token: str, token_type: str) -> dict | None:
    """The claims of a token of this type that is well signed, unexpired and not revoked."""
    try:
        payload = decode_token(token)
    except (PyJWTError, JWTExtendedException):
        return None
    if payload.get("type") != token_type or token_revoked(payload):
        return None
    return payload


def _user_id(identity) -> int | None:
    try:
        user_id = int(identity)
    except (TypeError, ValueError):
        return None
    return user_id if 0 < user_id < 2**63 else None


def load_user(identity: str) -> User | None:
    user_id = _user_id(identity)
    return db.session.get(User, user_id) if user_id is not None else None


def _current(user: User | None) -> User | None:
    if user is not None:
        g.user_id = user.id  # for the request's log line
    return user


def init_jwt(jwt: JWTManager) -> None:
    """Look up the caller on every request; answer every token problem with one 401 envelope."""

    @jwt.user_lookup_loader
    def _user_lookup(_header, payload):
        user = g.pop("token_user", None)  # found by the revocation check just before
        return _current(user if user is not None else load_user(payload["sub"]))

    @jwt.token_in_blocklist_loader
    def _revoked(_header, payload):
        # The user is loaded here; the user lookup that follows finds it in the session.
        return token_revoked(payload)

    @jwt.revoked_token_loader
    def _revoked_answer(_header, payload):
        if payload.get("type") == "refresh":
            # A spent or revoked refresh token came back: someone may hold a copy. Revoke every
            # token of its login, the legitimate client's newer ones included.
            revoke_family(payload)
        return error_response(401, "Token has been revoked")

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
