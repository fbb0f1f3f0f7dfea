"""A Responses call retried by its client: the call's retry key (headers.retry_key: its
`Idempotency-Key`, else, for the official SDKs, its body) is claimed by one stored response.

A stored call with a key claims it before the provider is called: a row of the responses table
with the key and no session yet, which a unique index on the key makes the only one, committed
at once (so a copy of the call sent meanwhile finds it). On PostgreSQL the claim is one
statement sent as its own transaction (autocommit: no `BEGIN` nor `COMMIT`): it reads the row
that holds the key, takes the key from it if this call may, and inserts the claim if the key is
then free. SQLite has no data-modifying `WITH`: there the same steps are a statement each, in a
transaction (no round trips to save in a database in the process; the transaction keeps them
one step). A call refused before its provider call lets go of its claim (`release`: a `DELETE`
of that row, found by its response id, the claim's token). Then a retry of the call (the same
key, the same user) finds:

- the response answered (completed or incomplete): that response, as it was returned; no
  provider call, nothing charged again;
- the call still under way: a 409 with Retry-After (the SDKs retry it, and then find the
  answer); a claim older than PROVIDER_TIMEOUT and a minute is taken as abandoned (so is one
  left by a call whose database failed before it could let go of it);
- the response failed: the retry takes the key over and is answered anew, in the failed
  question's session, which it supersedes (chat/attempts.py), as chat completions do.

A first attempt (the SDK's retry count 0) of a call whose body another call already sent is
a new call: it takes the key over. Two copies of one call sent at once: one is answered, the
other gets the 409.
"""

import logging
from datetime import timedelta
from enum import Enum
from functools import cache

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from .. import clock, database
from ..auth.access import unless_deleted
from ..extensions import db
from ..models import StoredResponse

log = logging.getLogger(__name__)
R = StoredResponse
_responses = R.__table__


class Found(Enum):
    NEW = "new"  # claimed: the call goes on
    ANSWERED = "answered"  # an earlier attempt's response is the answer
    BUSY = "busy"  # an earlier attempt is still under way
    OTHER = "other"  # a first attempt whose key another call holds: it goes on without it


_BY_KEY = select(R).where(R.retry_key == bindparam("key"), R.user_id == bindparam("user_id"))
_CLAIMED = ("public_id", "user_id", "retry_key", "items", "body", "created_at")
_CLAIM = insert(_responses).values(
    public_id=bindparam("public_id"),
    user_id=bindparam("user_id"),
    retry_key=bindparam("key"),
    items=bindparam("items"),
    body=bindparam("body"),
    created_at=bindparam("created_at"),
)
_FOUND = ("id", "session_id", "reply_id", "created_at", "body")  # what `_state` reads
_RELEASE = delete(_responses).where(
    _responses.c.public_id == bindparam("public_id"), _responses.c.session_id.is_(None)
)


def _abandoned_before():
    seconds = current_app.config["PROVIDER_TIMEOUT"] + 60
    return clock.now() - timedelta(seconds=seconds)


def _state(row: StoredResponse) -> Found | None:
    """What an earlier attempt with the key means for this one; None: this one may take it."""
    if row.reply_id is not None and row.body.get("status") in ("completed", "incomplete"):
        return Found.ANSWERED
    if row.session_id is None and row.created_at >= _abandoned_before():
        return Found.BUSY
    return None  # failed, or abandoned: a retry answers anew


def _free(retrying: bool) -> ColumnElement[bool]:
    """`_state` in SQL: whether the row holding the key lets this call take it (a first
    attempt takes any)."""
    if not retrying:
        return true()
    c = _responses.c
    status = c.body["status"].as_string()
    finished = func.coalesce(status.in_(["completed", "incomplete"]), False)
    answered = c.reply_id.is_not(None) & finished
    busy = c.session_id.is_(None) & (c.created_at >= bindparam("abandoned_before"))
    return ~answered & ~busy


@cache
def _one_statement(retrying: bool):
    """The claim on PostgreSQL: the row that holds the key (`found`, read as the statement
    began), the key taken from it when this call may (`taken`), and the claim inserted when no
    row keeps the key (`claimed`; a copy of the call that inserted its claim meanwhile wins:
    ON CONFLICT, nothing inserted). The claim reads `taken`, so the key is taken before it is
    inserted again. One row: the claim's id (None if not claimed) and what `found` read."""
    c = _responses.c
    # No parameter is named as a column: an UPDATE would take it for a value to set.
    held = (c.retry_key == bindparam("key")) & (c.user_id == bindparam("owner"))
    found = select(*(c[name] for name in _FOUND)).where(held).cte("found")
    taken = update(_responses).where(held, _free(retrying)).values(retry_key=null())
    taken = taken.returning(c.id).cte("taken")
    kept = select(found.c.id).where(found.c.id.not_in(select(taken.c.id)))
    values = [bindparam(f"c_{n}", type_=c[n].type) for n in _CLAIMED]
    claimed = (
        postgresql.insert(_responses)
        .from_select(list(_CLAIMED), select(*values).where(~exists(kept)))
        .on_conflict_do_nothing(index_elements=[c.retry_key])
        .returning(c.id)
        .cte("claimed")
    )
    one = select(literal_column("1").label("one")).subquery("one")
    return select(
        select(claimed.c.id).scalar_subquery().label("claimed"),
        *found.c,
    ).select_from(one.outerjoin(found, true()))


def _claimed_in_one(params: dict, retrying: bool) -> tuple[Found, StoredResponse | None] | None:
    """The claim as one statement (PostgreSQL), sent in autocommit; None when it lost a race
    (the key taken by a copy sent meanwhile, or the account deleted): `_lost` tells which."""
    try:
        got = db.session.connection().execute(_one_statement(retrying), params).one()
    except IntegrityError:  # the user's row gone under the claim's foreign key
        db.session.rollback()
        return None
    if got.claimed is not None:
        return Found.NEW, None
    if got.id is None:
        return None
    row = R(**{name: getattr(got, name) for name in _FOUND})
    state = _state(row)
    return (state, row) if retrying and state is not None else None


def _claimed_by_steps(params: dict, retrying: bool) -> tuple[Found, StoredResponse | None] | None:
    """The claim as a statement each (SQLite), committed; None when it lost a race."""
    key = params["key"]
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
            update(R).where(held, R.retry_key == key).values(retry_key=null()),
            execution_options={"synchronize_session": False},
        )
    try:
        db.session.execute(_CLAIM, params)
        db.session.commit()
    except IntegrityError:  # a copy of the call sent at the same time claimed it first
        db.session.rollback()
        return None
    return Found.NEW, None


def claim(
    user_id: int, key: str, retrying: bool, public_id: str
) -> tuple[Found, StoredResponse | None]:
    """Claim the call's key for the response `public_id`, committed (NEW); or the earlier
    attempt that answers this one (ANSWERED, its row) or holds the key (BUSY). A first attempt
    takes over another call's key, or goes on without one (OTHER) when a copy sent at the same
    time took it. AccountDeleted when the account was deleted meanwhile."""
    params = {"key": key, "user_id": user_id, "public_id": public_id, "items": []}
    params |= {"body": {"id": public_id, "object": "response", "status": "in_progress"}}
    params |= {"created_at": clock.now()}
    session = db.session()
    if session.get_bind().dialect.name == "postgresql":
        database.alone(session)
        claimed = {f"c_{name}": params[name] for name in _CLAIMED if name != "retry_key"}
        claimed |= {"c_retry_key": key, "key": key, "owner": user_id}
        claimed["abandoned_before"] = _abandoned_before()
        found = _claimed_in_one(claimed, retrying)
        if found is not None and found[0] is Found.NEW and not database.in_autocommit(session):
            session.commit()  # a transaction begun before: the claim is committed all the same
    else:
        found = _claimed_by_steps(params, retrying)
    return found if found is not None else _lost(user_id, key, retrying)


def _lost(user_id: int, key: str, retrying: bool) -> tuple[Found, StoredResponse | None]:
    """A claim that lost a race: to the account's deletion (AccountDeleted: the 401 of a
    call whose store finds it gone), or to a copy of the call sent at the same time."""
    database.alone(db.session())
    unless_deleted(user_id)
    if not retrying:
        return Found.OTHER, None
    row = db.session.scalar(_BY_KEY, {"key": key, "user_id": user_id})
    return (_state(row) or Found.BUSY) if row is not None else Found.BUSY, row


def release(public_id: str) -> None:
    """A claim whose call ended with nothing to keep (refused before the provider was called,
    or its turn could not be stored) lets go of its key: a retry is answered anew. The
    request's own transaction is rolled back first (nothing of it is kept, and none of its
    locks stays in the way); the `DELETE` goes on a connection of its own, sent alone on
    PostgreSQL, so that it commits nothing else (a rate-limit hit still pending is counted as
    the request ends, limits.py). Never raises: the client is told why its call ended, and a
    claim the database failed to let go is taken as abandoned after PROVIDER_TIMEOUT and a
    minute."""
    try:
        db.session.rollback()
        with db.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(_RELEASE, {"public_id": public_id})
            connection.commit()
    except Exception as e:
        log.warning("letting go of a retry key failed: %s", type(e).__name__)
