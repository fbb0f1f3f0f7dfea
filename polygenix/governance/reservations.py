"""Budget reservations: a call of a user with a budget holds what it may use before the
provider is called, so that calls in flight at once, on any worker or host, see each other.

Admission, in the transaction that ends the turn's preparation: the user's row locked
(PostgreSQL; on SQLite the reservation's INSERT takes the database's write lock), the call's
reservation inserted, then one query for what the user used this period and what their other
calls hold. At or over a budget with those, the call is refused and its reservation rolled
back. So each call is admitted knowing every call admitted before it, and calls in flight
together overshoot a budget by at most the last one admitted (and by what any call uses beyond
its estimate). Users without a budget reserve nothing and run none of this.

Settlement is one DELETE by id, a part of the statement that stores the call's usage (on
PostgreSQL a CTE of a turn's one statement, or of charging.settle's; on SQLite one more
statement of its transaction), so that it costs a turn no round trip of its own. A request
that ends with its reservation still held (a failure on the way) releases it as it ends (a
stream, as its relay ends: Flask tears a streamed request down before relaying it); a worker
that dies mid-call, or a stream never relayed, leaves it until its expiry, the call's
deadline, after which it counts for nothing and the user's next admission deletes it.
"""

import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from flask import Flask, current_app, g
from sqlalchemy import Select, bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..errors import AccountDeleted, Refused
from ..extensions import db
from ..metrics import REFUSED
from ..models import BudgetReservation, UsageDaily, User
from . import ledger

log = logging.getLogger(__name__)
_r = BudgetReservation.__table__.c
_u = UsageDaily.__table__.c
HELD = "polygenix_reservations"

# FOR NO KEY UPDATE: it queues a user's admissions, and no foreign key check (KEY SHARE) waits.
_LOCK = select(User.id).where(User.id == bindparam("user_id")).with_for_update(key_share=True)
# The user's row locked first, on PostgreSQL, by a transaction that then writes more than one of
# the user's rows (their usage, a reservation, a session): an account's deletion locks that row
# before it cascades to the others (sessions, usage, reservations, in an order of PostgreSQL's
# own), so a transaction that held one of them while it waited for another the deletion holds
# would deadlock with it. FOR KEY SHARE: what the deletion (`DELETE FROM users`) waits for, and
# nothing else. A part of a larger statement (no row: the account is gone), its user bound as
# `owner_id`: a parameter named `user_id` would be taken by an UPDATE or INSERT of it for a
# value to set. SQLite locks the whole database for a writer: nothing to do there.
HOLD = (
    select(User.id)
    .where(User.id == bindparam("owner_id"))
    .with_for_update(read=True, key_share=True)
)
_RESERVE = (
    insert(BudgetReservation.__table__)
    .values(
        user_id=bindparam("user_id"),
        tokens=bindparam("tokens"),
        cost_nanousd=bindparam("cost"),
        expires_at=bindparam("expires_at"),
    )
    .returning(_r.id)
)
_others = (_r.user_id == bindparam("user_id"), _r.id != bindparam("own"))
_live = _r.expires_at > bindparam("now")
_used = (_u.user_id == bindparam("user_id"), _u.day >= bindparam("earliest"))
# What the user used this period and what their other calls hold: one round trip.
_STANDING = select(
    select(func.sum(_u.prompt_tokens + _u.completion_tokens))
    .where(*_used, _u.day >= bindparam("tokens_from"))
    .scalar_subquery(),
    select(func.sum(_u.cost_nanousd))
    .where(*_used, _u.day >= bindparam("cost_from"))
    .scalar_subquery(),
    select(func.sum(_r.tokens)).where(*_others, _live).scalar_subquery(),
    select(func.sum(_r.cost_nanousd)).where(*_others, _live).scalar_subquery(),
    select(func.count(_r.id)).where(*_others, ~_live).scalar_subquery(),
)
_EXPIRED = delete(BudgetReservation.__table__).where(
    _r.user_id == bindparam("user_id"), _r.expires_at <= bindparam("now")
)
_RELEASE = delete(BudgetReservation.__table__).where(
    _r.id == bindparam("reservation"), _r.user_id == bindparam("user_id")
)


@dataclass(frozen=True)
class Standing:
    used_tokens: int
    used_dollars: Decimal
    held_tokens: int
    held_dollars: Decimal


def reserve_call(
    user_id: int, limits, prices, provider, model: str | None, options, prompt: int, streamed: bool
) -> int | None:
    """Reserve a call's estimate for a user with a budget (None for one without): its `prompt`
    tokens and its output cap (max_tokens, else the model's, at most the largest output cap the
    server sets), priced, until the call's deadline."""
    if limits.tokens is None and limits.cost is None:
        return None
    config = current_app.config
    output = 0
    if model is not None:  # None: the provider is not configured and will not be called
        biggest = max(config["MAX_OUTPUT_TOKENS"], config["REASONING_MAX_OUTPUT_TOKENS"])
        cap = min(provider.output_cap(model, options), biggest)
        output = min(options.max_tokens or cap, cap)
    now = clock.now()
    cost = prices.cost(provider.name, model, model, prompt, output, None, now) if model else None
    # The longest the call may last: the whole plain call (retries included), or a stream's
    # opening, its longest run and a last silence.
    seconds = config["PROVIDER_TIMEOUT"]
    if streamed:
        seconds += config["STREAM_MAX_SECONDS"] + config["STREAM_IDLE_TIMEOUT"]
    return reserve(user_id, limits, prompt + output, cost, now + timedelta(seconds=seconds))


def reserve(user_id: int, limits, tokens: int, cost: Decimal | None, expires_at: datetime) -> int:
    """Reserve `tokens` and `cost` for a call of the user until `expires_at`, in the current
    transaction (the caller commits it before calling the provider); its id. Refused (429,
    with what is used and reserved) when the user's use this period and their other calls'
    reservations reach a budget: nothing is then left reserved."""
    now = clock.now()
    values = {"user_id": user_id, "tokens": tokens, "cost": ledger.nanodollars(cost)}
    try:
        if db.engine.dialect.name == "postgresql":
            if db.session.execute(_LOCK, {"user_id": user_id}).first() is None:
                raise LookupError
        own = db.session.execute(_RESERVE, values | {"expires_at": expires_at}).scalar_one()
    except (LookupError, IntegrityError):  # the account deleted since the request began
        db.session.rollback()
        raise AccountDeleted() from None
    standing, expired = _standing(user_id, own, limits, now)
    for kind, budget, used, held in (
        ("token", limits.tokens, standing.used_tokens, standing.held_tokens),
        ("cost", limits.cost, standing.used_dollars, standing.held_dollars),
    ):
        if budget is not None and used + held >= budget.amount:
            db.session.rollback()
            _refuse(kind, budget, used, held, now)
    if expired:
        db.session.execute(_EXPIRED, {"user_id": user_id, "now": now})
    g.setdefault(HELD, {})[own] = user_id
    return own


def _standing(user_id: int, own: int, limits, now: datetime) -> tuple[Standing, int]:
    far = datetime.max.date()
    tokens_from = limits.tokens.window(now)[0] if limits.tokens is not None else far
    cost_from = limits.cost.window(now)[0] if limits.cost is not None else far
    used, spent, held, held_cost, expired = db.session.execute(
        _STANDING,
        {
            "user_id": user_id,
            "own": own,
            "now": now,
            "tokens_from": tokens_from,
            "cost_from": cost_from,
            "earliest": min(tokens_from, cost_from),
        },
    ).one()
    nano = ledger.NANO
    standing = Standing(
        int(used or 0),
        Decimal(int(spent or 0)) / nano,
        int(held or 0),
        Decimal(int(held_cost or 0)) / nano,
    )
    return standing, expired


def _refuse(kind: str, budget, used, held, now: datetime):
    _, resets_at = budget.window(now)
    if used >= budget.amount:
        reason = f"{kind}_budget"
        message = (
            f"Your {kind} budget of {budget.text} is used up; it resets at {resets_at.isoformat()}"
        )
        retry_after = max(math.ceil((resets_at - now).total_seconds()), 1)
    else:
        reason = f"{kind}_budget_reserved"
        if kind == "token":
            amounts = f"{used:,} used and {held:,}"
        else:
            amounts = f"${used:,.6f} used and ${held:,.6f}"
        message = (
            f"Your {kind} budget of {budget.text} is taken: {amounts} reserved by your calls "
            "in flight; try again once they end"
        )
        retry_after = 1
    REFUSED.labels(reason).inc()
    raise Refused(429, reason, message, retry_after)


def release(user_id: int, reservation: int) -> None:
    """Delete a reservation in the current transaction (the caller commits)."""
    db.session.execute(_RELEASE, {"reservation": reservation, "user_id": user_id})


def released_by(user_ids: Select):
    """PostgreSQL: the DELETE of the reservation bound as `reservation` if it is the one of the
    user `user_ids` gives (a select of one column), as a part of a larger statement. It reads
    that user as it finds the reservation's row, before it deletes it: the user's row (locked by
    `user_ids`) first, as in every transaction that writes more than one of the user's rows."""
    return delete(BudgetReservation.__table__).where(
        _r.id == bindparam("reservation"), _r.user_id == user_ids.scalar_subquery()
    )


def settled(reservations: Iterable[int]) -> None:
    """These reservations were released and committed: the request's end has nothing to do."""
    held = g.get(HELD)
    if held:
        for reservation in reservations:
            held.pop(reservation, None)


def hand_over(reservation: int | None) -> None:
    """A streamed call's reservation outlives its view: the stream releases it, not the
    request's end."""
    held = g.get(HELD)
    if held and reservation is not None:
        held.pop(reservation, None)


def release_leftovers(_error=None) -> None:
    """As a request ends: release what a failure on the way left reserved."""
    held = g.pop(HELD, None)
    if not held:
        return
    try:
        db.session.rollback()
        for reservation, user_id in held.items():
            release(user_id, reservation)
        db.session.commit()
    except Exception as e:  # the database is gone: the reservations expire at their deadline
        log.warning("releasing budget reservations failed: %s", type(e).__name__)
        with contextlib.suppress(Exception):
            db.session.rollback()


def init_reservations(app: Flask) -> None:
    app.teardown_request(release_leftovers)
