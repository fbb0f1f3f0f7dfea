"""Issuing and checking JWTs: who the caller is, and whether the token still stands."""

import uuid

from flask import current_app, g
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError

from .. import clock, database
from ..errors import error_response
from ..extensions import db
from ..limits import password_attempt
from ..models import User
from ..user.service import find_by_email
from .access import PREPARES, set_caller
from .passwords import check_no_password, outdated
from .revocation import revoke_family, user_and_revocation


def issue_tokens(user: User, family: str | None = None, *, fresh: bool = False) -> dict:
    """An access and a refresh token: the original's two fields plus refresh_token, expires_in.

    Every token carries its account's token key (`acct`: it binds the token to this account,
    not merely to its id, and a new password draws a new one, revoking all earlier tokens) and
    its family (`fam`: one per login, kept by refreshes; logout revokes it). The access token of
    a password login (`fresh`) is flask-jwt-extended's fresh token: its `fresh` claim is the
    time until which it may change the password without the current one (see access.py).
    """
    claims = {"acct": user.token_key, "fam": family or str(uuid.uuid4())}
    config = current_app.config
    expires = config["JWT_ACCESS_TOKEN_EXPIRES"]
    minutes = config["PASSWORD_CHANGE_FRESH_MINUTES"]
    fresh_until = clock.timestamp() + minutes * 60 if fresh and minutes else False
    return {
        "access_token": create_access_token(
            str(user.id), additional_claims=claims, fresh=fresh_until
        ),
        "token_type": "bearer",
        "expires_in": int(expires.total_seconds()),
        "refresh_token": create_refresh_token(str(user.id), additional_claims=claims),
    }


def token_revoked(payload: dict) -> bool:
    """Revoked by logout, by refresh-token reuse, by a later password change, or issued to an
    account that no longer exists.

    The user found on the way (None: the account is gone) is kept for the user lookup that
    follows on this request. On PostgreSQL the query is a transaction of its own (no `BEGIN`
    nor `COMMIT`): nothing the request does next is made any less current by it, since under
    READ COMMITTED every statement of a transaction read its own snapshot anyway, and nothing
    of the caller's row is locked.
    """
    user_id = _user_id(payload.get("sub"))
    if user_id is None:
        return True
    with database.statements_alone(db.session(), reads_follow=g.get(PREPARES, False)):
        user, revoked = user_and_revocation(payload, user_id)
    g.token_user = user
    return revoked or (user is not None and payload.get("acct") != user.token_key)


def authenticate(email: str, password: str) -> User | None:
    """The user whose email and password these are, or None.

    Each attempt counts against the account's password-check limit. An unknown email still
    costs one password check: it takes as long as a wrong password.
    """
    password_attempt(email)
    user = find_by_email(email)
    # The lookup's transaction ends here: no database connection is held while hashing.
    db.session.commit()
    if user is None:
        check_no_password(password)
        return None
    if not user.verify_password(password):
        return None
    # A hash made with weaker settings than today's is replaced while the password is at hand.
    if outdated(user.password_hash):
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
    return set_caller(user) if user is not None else None


def init_jwt(jwt: JWTManager) -> None:
    """Look up the caller on every request (the other token failures: see errors.py)."""

    @jwt.user_lookup_loader
    def _user_lookup(_header, payload):
        if "token_user" in g:  # looked up by the revocation check just before
            return _current(g.pop("token_user"))
        return _current(load_user(payload["sub"]))

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
