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
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from .. import clock, database
from ..extensions import db
from ..logs import note
from ..metrics import record_cost, record_provider_call
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


def release(call: Call) -> None:
    """The call is over: its reservation goes, in the transaction that stores its usage."""
    if call.reservation is not None:
        reservations.release(call.user_id, call.reservation)


def released(call: Call) -> None:
    """After the commit that released the call's reservation."""
    if call.reservation is not None:
        reservations.settled([call.reservation])
        call.reservation = None


def count_alone(call: Call, usage: ledger.Entry | None) -> None:
    """A call whose turn is not stored still used the provider: its usage counts (unless the
    user is gone), and its budget reservation goes. Its own transaction."""
    if usage is None and call.reservation is None:
        return
    if call.reservation is None:  # one statement: its own transaction where it can be
        database.alone(db.session())
    # Two of the user's rows: the user's own first, as in every such transaction. Gone, the
    # account took its usage and reservations with it: nothing is left to store.
    elif usage is not None and not reservations.hold_user(call.user_id):
        db.session.rollback()
        released(call)
        return
    try:
        if usage is not None:
            usage.add()
        release(call)
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
