"""A Responses call retried by its client: the call's retry key (headers.retry_key: its
`Idempotency-Key`, else, for the official SDKs, its body) is claimed by one stored response.

A stored call with a key claims it before the provider is called, in the transaction that
prepares its turn (no commit of its own): a row of the responses table with the key and no
session yet, which a unique index on the key makes the only one. Then a retry of the call
(the same key, the same user) finds:

- the response answered (completed or incomplete): that response, as it was returned; no
  provider call, nothing charged again;
- the call still under way: a 409 with Retry-After (the SDKs retry it, and then find the
  answer); a claim older than PROVIDER_TIMEOUT and a minute is taken as abandoned;
- the response failed: the retry takes the key over and is answered anew, in the failed
  question's session, which it supersedes (chat/attempts.py), as chat completions do.

A first attempt (the SDK's retry count 0) of a call whose body another call already sent is
a new call: it takes the key over. Two copies of one call sent at once: one is answered, the
other gets the 409.
"""

from datetime import timedelta
from enum import Enum

from flask import current_app
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..errors import SessionDeleted
from ..extensions import db
from ..models import StoredResponse, User

R = StoredResponse


class Found(Enum):
    NEW = "new"  # claimed: the call goes on
    ANSWERED = "answered"  # an earlier attempt's response is the answer
    BUSY = "busy"  # an earlier attempt is still under way
    OTHER = "other"  # a first attempt whose key another call holds: it goes on without it


_BY_KEY = select(R).where(R.retry_key == bindparam("key"), R.user_id == bindparam("user_id"))
_CLAIM = insert(R.__table__).values(
    public_id=bindparam("public_id"),
    user_id=bindparam("user_id"),
    retry_key=bindparam("key"),
    items=bindparam("items"),
    body=bindparam("body"),
    created_at=bindparam("created_at"),
)


def _abandoned(row: StoredResponse) -> bool:
    seconds = current_app.config["PROVIDER_TIMEOUT"] + 60
    return row.created_at < clock.now() - timedelta(seconds=seconds)


def _state(row: StoredResponse) -> Found | None:
    """What an earlier attempt with the key means for this one; None: this one may take it."""
    if row.reply_id is not None and row.body.get("status") in ("completed", "incomplete"):
        return Found.ANSWERED
    if row.session_id is None and not _abandoned(row):
        return Found.BUSY
    return None  # failed, or abandoned: a retry answers anew


def claim(
    user_id: int, key: str, retrying: bool, public_id: str
) -> tuple[Found, StoredResponse | None]:
    """Claim the call's key for the response `public_id`, in the transaction its turn's
    prepare step commits (NEW); or the earlier attempt that answers this one (ANSWERED, its
    row) or holds the key (BUSY). A first attempt takes over another call's key, or goes on
    without one (OTHER) when a copy sent at the same time took it."""
    params = {"key": key, "user_id": user_id}
    if retrying:
        row = db.session.scalar(_BY_KEY, params)
        if row is not None:
            state = _state(row)
            if state is not None:
                return state, row
            held = R.id == row.id  # a failed or abandoned attempt lets go of the key
    else:
        row, held = None, R.retry_key == key  # another call's, whatever its state
    if row is not None or not retrying:
        db.session.execute(
            update(R).where(held, R.retry_key == key).values(retry_key=None),
            execution_options={"synchronize_session": False},
        )
    body = {"id": public_id, "object": "response", "status": "in_progress"}
    claimed = params | {"public_id": public_id, "items": [], "body": body}
    try:
        db.session.execute(_CLAIM, claimed | {"created_at": clock.now()})
    except IntegrityError:  # a copy of the call sent at the same time claimed it first
        db.session.rollback()
        if db.session.scalar(select(User.id).where(User.id == user_id)) is None:
            # Or the account was deleted meanwhile (its caller's user is gone from under it):
            # answered as a call whose store finds it gone.
            raise SessionDeleted() from None
        if not retrying:
            return Found.OTHER, None
        row = db.session.scalar(_BY_KEY, params)
        return (_state(row) or Found.BUSY) if row is not None else Found.BUSY, row
    return Found.NEW, None


def release(public_id: str) -> None:
    """A claim whose call ended with nothing to keep (refused before the provider was called,
    or its turn could not be stored) lets go of its key: a retry is answered anew."""
    db.session.execute(delete(R).where(R.public_id == public_id, R.session_id.is_(None)))
    db.session.commit()
