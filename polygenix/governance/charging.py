"""Charging a provider call: the budget it reserves before it is made (reservations.py), what
it used once it is over (a ledger entry and its cost, the cost and call metrics, the request's
log line), and the reservation released in the transaction that stores that usage.

A call is anything with the fields of `Call` (a chat turn is one). Tokens a provider did not
report (a stream cut short, a client that hung up) are counted at CHARS_PER_TOKEN characters
each, so that no budget is escaped by hanging up.
"""

import contextlib
import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from typing import Any, Protocol, cast

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from .. import clock, database
from ..extensions import db
from ..logs import note
from ..metrics import record_cost, record_provider_call
from ..models import UsageDaily
from ..providers import Options, Provider
from ..providers.base import USAGE
from . import ledger, reservations
from .policy import Limits, governance

log = logging.getLogger(__name__)
CHARS_PER_TOKEN = 4


class Call(Protocol):
    """What charging reads of a provider call, and the reservation it holds."""

    user_id: int
    provider: Provider
    model: str | None  # the provider's model id the call was made for
    options: Options
    started: float  # time.monotonic() when the provider call began; 0.0: not yet
    reservation: int | None  # what the call holds of a budget until its usage is stored

    @property
    def prompt_chars(self) -> int:
        """The size of what the provider is sent, in characters (for an estimate)."""
        ...


def estimate(chars: int) -> int:
    """Tokens for `chars` characters, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def reserve(call: Call, limits: Limits, streamed: bool) -> None:
    """A user with a budget reserves the call's estimate (or is refused: a 429), in the
    transaction the caller commits before the provider is called; `streamed` sets its
    deadline."""
    call.reservation = reservations.reserve_call(
        call.user_id,
        limits,
        governance().prices,
        call.provider,
        call.model,
        call.options,
        estimate(call.prompt_chars),
        streamed,
    )


def account(call: Call, outcome: str, prompt_tokens=None, completion_tokens=None) -> None:
    """The provider call in the metrics and in the request's log line."""
    seconds = time.monotonic() - call.started if call.started else 0.0
    record_provider_call(
        call.provider, call.model, outcome, seconds, prompt_tokens, completion_tokens
    )
    note(
        provider=call.provider.name,
        model=call.model,
        outcome=outcome,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        provider_latency_ms=round(seconds * 1000, 1),
    )


def charge(
    call: Call,
    answered: str | None,
    counts: Mapping[str, int | None],
    text: str,
    reasoning: str,
    called: int = 0,
) -> tuple[ledger.Entry, Decimal | None]:
    """What the provider call used, as an entry of the user's usage (and in the cost metric),
    and its cost as the reply shows it (None when unknown). `answered` is the model the
    provider says answered; `counts`, the usage it reported (providers.base.USAGE); `called`,
    the characters of the reply's tool call arguments. Tokens not reported are estimated.
    """
    model = answered or call.model
    prompt, completion = counts["prompt_tokens"], counts["completion_tokens"]
    reported = prompt is not None and completion is not None
    if prompt is None:
        prompt = estimate(call.prompt_chars)
    if completion is None:
        completion = estimate(len(text) + len(reasoning) + called)
    now = clock.now()
    cost = governance().prices.cost(
        call.provider.name, call.model, model, prompt, completion, counts["cached_tokens"], now
    )
    record_cost(call.provider, call.model, cost)
    name = f"{call.provider.name}/{model}"
    entry = ledger.Entry(call.user_id, now.date(), name, prompt, completion, cost)
    return entry, cost if reported else None


def used_without_reply(
    call: Call, used: Mapping[str, Any] | None, reasoning: str = "", *, prompt_read: bool = False
) -> ledger.Entry | None:
    """A call that gave no usable reply but used the provider all the same (it reported usage,
    it reasoned, or, `prompt_read`, it was reading the prompt when the client hung up): what it
    used (estimated where not reported); else None."""
    used = used or {}
    counts = {name: used.get(name) for name in USAGE}
    reported = counts["prompt_tokens"] is not None or counts["completion_tokens"] is not None
    if not (reasoning or reported or prompt_read):
        return None
    return charge(call, used.get("model"), counts, "", reasoning)[0]


def dollars(cost: Decimal | None) -> float | None:
    """A cost as a reply shows it."""
    return float(cost) if cost is not None else None


def settling(user_ids: Select, with_usage: bool, with_release: bool) -> tuple[list, Select]:
    """PostgreSQL: what settles a call as CTEs of a larger statement, once the user's row that
    `user_ids` gives (a select of one column) is locked: its usage added ("used", bound as
    Entry.params but its user), then its reservation released ("released", bound as
    `reservation`), each reading the user from the one before it, which fixes their order. And
    the select of the user from the last that returns it, for a step that must follow them."""
    ctes: list = []
    if with_usage:
        upsert = ledger.upsert_for(user_ids).returning(UsageDaily.__table__.c.user_id)
        used = upsert.cte("used")
        ctes.append(used)
        user_ids = select(used.c.user_id)
    if with_release:
        ctes.append(reservations.released_by(user_ids).cte("released"))
    return ctes, user_ids


def settling_params(call: Call, usage: ledger.Entry | None, release: bool) -> dict[str, Any]:
    """The values `settling`'s CTEs bind, for `usage` and (if `release`) the call's reservation."""
    params: dict[str, Any] = usage.params() if usage is not None else {}
    if release and call.reservation is not None:
        params["reservation"] = call.reservation
    return params


@cache
def _settle(with_usage: bool, with_release: bool):
    owner = reservations.HOLD.cte("owner")
    ctes, _ = settling(select(owner.c.id), with_usage, with_release)
    return select(owner.c.id).add_cte(*ctes)


def settle(
    call: Call, usage: ledger.Entry | None, release: bool = True, held: bool = False
) -> bool:
    """The call's usage counted (if any) and its reservation released (if any, and `release`:
    the call is over), in the caller's transaction, the user's row held first (unless it is
    already, `held`: reservations.HOLD): one statement on PostgreSQL. False, nothing written,
    if the account is gone (SQLite: the usage's foreign key then fails, an IntegrityError)."""
    releasing = release and call.reservation is not None
    if usage is None and not releasing:
        return True
    # SQLite has one writer at a time: no row lock to take first.
    if held or db.engine.dialect.name != "postgresql":
        if usage is not None:
            usage.add()
        if releasing:
            reservations.release(call.user_id, cast(int, call.reservation))
        return True
    params = {"owner_id": call.user_id} | settling_params(call, usage, release)
    return db.session.execute(_settle(usage is not None, releasing), params).first() is not None


def released(call: Call) -> None:
    """After the commit that released the call's reservation."""
    if call.reservation is not None:
        reservations.settled([call.reservation])
        call.reservation = None


def count_alone(call: Call, usage: ledger.Entry | None) -> None:
    """A call whose turn is not stored still used the provider: its usage counts (unless the
    user is gone: the account took its usage and reservations with it), and its budget
    reservation goes. One statement on PostgreSQL, its own transaction where it can be."""
    if usage is None and call.reservation is None:
        return
    database.alone(db.session())
    try:
        if call.reservation is None and usage is not None:  # one row: nothing to hold first
            usage.add()
        else:
            settle(call, usage)
        db.session.commit()
    except IntegrityError:  # the account was deleted meanwhile, and its reservations with it
        db.session.rollback()
    released(call)


def release_unsettled(call: Call) -> None:
    """As a stream ends: the reservation a failure on the way left is released."""
    if call.reservation is None:
        return
    try:
        count_alone(call, None)
    except Exception as e:  # the database is gone: the reservation expires at its deadline
        log.warning("releasing a budget reservation failed: %s", type(e).__name__)
        with contextlib.suppress(Exception):
            db.session.rollback()
