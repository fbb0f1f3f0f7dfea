"""Who is calling: the user of the request's access token, or of its personal API key.

An API key (`pgx_...`) is a bearer credential for the chat endpoints and /v1 only: on any
other authenticated route it is refused with a 403 (account management needs a login). An
expired key, a revoked (deleted) one, or one of a deleted user is a 401. A key's last use is
written at most once a minute.
"""

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from functools import wraps
from typing import NamedTuple, NoReturn

from flask import g, request
from flask_jwt_extended import get_jwt, jwt_required
from flask_smorest import abort
from sqlalchemy import bindparam, select, update
from werkzeug.local import LocalProxy

from .. import clock, database
from ..errors import AccountDeleted, error_response
from ..extensions import db
from ..models import ApiKey, User, UserLimits
from . import cookie

KEY_PREFIX = "pgx_"
LAST_USED_EVERY = timedelta(minutes=1)

current_user: User = LocalProxy(lambda: g.caller)  # type: ignore[assignment]
# The caller's own limits (governance.policy reads them), read by the caller's lookup: every
# chat request needs them, and they come with the user's row for one round trip less. Columns,
# not the ORM object, so that no later query of the request finds a stale one in the session.
OWN_LIMITS = (UserLimits.models, UserLimits.token_budget, UserLimits.cost_budget)
_CALLER_LIMITS = "caller_limits"  # in `g`: (the caller's id, their OwnLimits or None)
# In `g`: whether the view's first database work is a turn's preparation, whose reads go on in
# the caller's lookup's autocommit (see `required`); unset (no `required`): False.
PREPARES = "prepares"


def set_caller(user: User) -> User:
    g.caller = user
    g.user_id = user.id  # for the request's log line
    return user


class OwnLimits(NamedTuple):
    """A user's own limits as their row holds them (None: the default)."""

    models: list[str] | None
    token_budget: str | None
    cost_budget: str | None


def keep_limits(user_id: int, own: Sequence) -> None:
    """The caller's own limits as their lookup read them (OWN_LIMITS' values; all null: none
    set, as an admin's setting of all three back to null deletes the row)."""
    unset = all(value is None for value in own)
    setattr(g, _CALLER_LIMITS, (user_id, None if unset else OwnLimits(*own)))


def read_limits(user_id: int) -> tuple[bool, OwnLimits | None]:
    """Whether this request's lookup read the user's own limits, and what it found."""
    known = g.get(_CALLER_LIMITS)
    if known is None or known[0] != user_id:
        return False, None
    return True, known[1]


def forget_limits(user_id: int) -> None:
    """The user's own limits changed: read them anew."""
    if read_limits(user_id)[0]:
        g.pop(_CALLER_LIMITS)


def fresh_login() -> bool:
    """Whether the caller's access token is fresh: issued by a password login (login or
    register) within PASSWORD_CHANGE_FRESH_MINUTES. Its `fresh` claim holds the time until which
    it is; refreshed tokens carry false, and an API key has no token at all."""
    try:
        fresh = get_jwt().get("fresh")
    except RuntimeError:  # no token verified on this request (an API key)
        return False
    return type(fresh) in (int, float) and clock.timestamp() < fresh


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()


_KEY_AND_USER = (
    select(ApiKey, User, *OWN_LIMITS)
    .join(User, User.id == ApiKey.user_id)
    .outerjoin(UserLimits, UserLimits.user_id == User.id)
    .where(ApiKey.digest == bindparam("d"))
)


def key_user(key: str) -> User | str:
    """The user of this API key, or why it is refused. On PostgreSQL the lookup, and the
    write of the key's last use, are each a transaction of their own (no `BEGIN` nor
    `COMMIT`): neither needs the other's, nor what the request does next."""
    with database.statements_alone(db.session(), reads_follow=g.get(PREPARES, False)):
        row = db.session.execute(_KEY_AND_USER, {"d": digest(key)}).first()
        if row is None:
            return "Invalid API key"
        api_key, user, *own = row
        keep_limits(user.id, own)
        now = clock.now()
        if api_key.expires_at is not None and api_key.expires_at <= now:
            return "API key has expired"
        if api_key.last_used_at is None or api_key.last_used_at <= now - LAST_USED_EVERY:
            last_used = update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=now)
            db.session.execute(last_used)
            if not database.in_autocommit(db.session()):  # else written, and the reads go on
                db.session.commit()
    return user


def account_exists(user_id: int) -> bool:
    """Whether the user's account is still there: asked of the database, since the caller's
    row in the session was read before any deletion that came since."""
    return db.session.scalar(select(User.id).where(User.id == user_id)) is not None


def unless_deleted(user_id: int) -> None:
    """AccountDeleted (the 401 every later request with their token or key gets) if the
    caller's account was deleted since they were looked up, and everything of theirs with it:
    for a request that found something of theirs gone."""
    if not account_exists(user_id):
        raise AccountDeleted()


def missing(user_id: int, message: str) -> NoReturn:
    """The answer of a request that found something of the caller's gone: a 404 `message`, or
    AccountDeleted if it went with their account (`unless_deleted`)."""
    unless_deleted(user_id)
    abort(404, message=message)


def admin_only(view):
    """A view decorator, inside the authentication: a 403 for anyone but an admin, before
    anything of the request is read (a malformed request must not learn how the admin API
    validates it)."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if not current_user.is_admin:
            return error_response(403, "Only an admin may do this")
        return view(*args, **kwargs)

    return guarded


def required(
    *, keys: bool = False, refresh: bool = False, admin: bool = False, prepares: bool = False
):
    """A view decorator: a valid access token (a refresh token with `refresh`), or with `keys`
    an API key too; the caller is then `current_user`. With `admin`, only an admin's.

    `prepares`: the view's first database work is a turn's preparation (chat/prepare.py),
    nothing written before it but single statements (a Responses call's claim). On
    PostgreSQL the caller's lookup then leaves its autocommit open and the preparation's
    reads follow on its connection, ending it: one pooled connection taken before the
    provider call, not two (under a burst, one wait in the pool's queue). The request's body
    is read before the lookup."""

    def decorator(view):
        if admin:
            view = admin_only(view)
        with_token = jwt_required(refresh=refresh)(view)
        # The web page's refresh token comes in its cookie (see cookie.py), never an access token.
        with_cookie = jwt_required(refresh=True, locations=["cookies"])(view) if refresh else None

        @wraps(view)
        def guarded(*args, **kwargs):
            setattr(g, PREPARES, prepares)
            token = bearer_token()
            if prepares and token is not None:
                # Its body read first: the lookup's connection is kept from then on, and a
                # slow upload must not hold it.
                request.get_data(cache=True)
            if token is not None and token.startswith(KEY_PREFIX):
                if not keys:
                    return error_response(
                        403, "API keys work only for chat; this needs a login (an access token)"
                    )
                found = key_user(token)
                if isinstance(found, str):
                    return error_response(401, found)
                set_caller(found)
                return view(*args, **kwargs)
            if with_cookie is not None and token is None and cookie.stored():
                return with_cookie(*args, **kwargs)
            return with_token(*args, **kwargs)

        return guarded

    return decorator
