"""Who may use which models, and how much.

A model is allowed when one of the caller's patterns matches it: MODEL_ALLOWLIST, or the list
an admin set for that user (which replaces it; an empty list allows no model). Patterns are
case-sensitive globs (`*`, `?`, `[...]`) matched against the resolved `provider/model`; one
without a `/` is matched against the provider's name alone, so `groq` allows every Groq model
and `*` every model.

Budgets cap a user's prompt + completion tokens (TOKEN_BUDGET) and US dollars (COST_BUDGET) per
UTC calendar day, week (from Monday) or month, written `N/day`, `N/week`, `N/month`; an admin
may set either per user, or `unlimited`. Before the provider is called, each call of a user with
a budget reserves its estimate (its prompt's, plus its output cap, priced) and is refused when
what the user used this period and what their other calls in flight hold reach a budget
(reservations.py). Concurrent calls, on any worker or host, so overshoot a budget by at most
one call, and by what a call uses beyond its estimate.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase

from flask import Flask, current_app
from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..auth.access import forget_limits, read_limits
from ..catalog import catalogue
from ..config import ConfigError
from ..errors import Refused
from ..extensions import db
from ..metrics import REFUSED
from ..models import UserLimits
from ..provider_registry import registry
from . import ledger, reservations
from .prices import Prices

EXTENSION = "polygenix.governance"
UNLIMITED = "unlimited"
PERIODS = ("day", "week", "month")
MAX_PATTERNS = 100
# What a budget may be, as regular expressions (in the OpenAPI document too): under 10^15
# tokens, or under a billion dollars with up to 6 decimals, per period.
TOKEN_BUDGET_TEXT = r"(unlimited|[0-9]{1,15}/(day|week|month))"
COST_BUDGET_TEXT = r"(unlimited|[0-9]{1,9}(\.[0-9]{1,6})?/(day|week|month))"
PATTERN_TEXT = r"[!-+\--~]{1,200}"  # printable ASCII but space and comma
_TOKENS, _DOLLARS = re.compile(TOKEN_BUDGET_TEXT), re.compile(COST_BUDGET_TEXT)
_PATTERN = re.compile(PATTERN_TEXT)


@dataclass(frozen=True)
class Budget:
    amount: Decimal  # tokens, or US dollars
    period: str  # day, week or month
    text: str  # as written, e.g. "30/day"

    def window(self, now: datetime) -> tuple[date, datetime]:
        """The current period's first day, and when it ends (UTC)."""
        today = now.astimezone(UTC).date()
        if self.period == "day":
            start, end = today, today + timedelta(days=1)
        elif self.period == "week":
            start = today - timedelta(days=today.weekday())
            end = start + timedelta(days=7)
        else:
            start = today.replace(day=1)
            end = (start + timedelta(days=32)).replace(day=1)
        return start, datetime.combine(end, time(), UTC)


def parse_budget(text: str, *, dollars: bool) -> Budget | None:
    """`N/day|week|month` (see TOKEN_BUDGET_TEXT, COST_BUDGET_TEXT), or None for `unlimited`.
    ValueError with the reason otherwise."""
    text = text.strip().lower()
    if not (_DOLLARS if dollars else _TOKENS).fullmatch(text):
        kind = "dollars (under 10^9, up to 6 decimals)" if dollars else "tokens (under 10^15)"
        raise ValueError(f"Must be 'unlimited' or N/day, N/week or N/month, N in {kind}.")
    if text == UNLIMITED:
        return None
    amount, period = text.split("/")
    return Budget(Decimal(amount), period, text)


def parse_patterns(patterns: list[str]) -> tuple[str, ...]:
    """Model patterns as given, checked; ValueError with the reason otherwise."""
    if len(patterns) > MAX_PATTERNS:
        raise ValueError(f"At most {MAX_PATTERNS} patterns.")
    for pattern in patterns:
        if not _PATTERN.fullmatch(pattern):
            raise ValueError(
                "Each pattern is 1 to 200 printable ASCII characters but space and comma, "
                f"such as 'groq/*' or 'echo'; got {pattern[:50]!r}."
            )
    return tuple(patterns)


def allows(patterns: tuple[str, ...], provider: str, model: str | None) -> bool:
    name = f"{provider}/{model or ''}"
    return any(fnmatchcase(name if "/" in p else provider, p) for p in patterns)


@dataclass(frozen=True)
class Limits:
    """A user's effective limits: their own where an admin set them, else the defaults."""

    models: tuple[str, ...]
    tokens: Budget | None
    cost: Budget | None

    def allows(self, provider: str, model: str | None) -> bool:
        return allows(self.models, provider, model)


@dataclass(frozen=True)
class Governance:
    defaults: Limits
    prices: Prices


def init_governance(app: Flask) -> None:
    """Parse MODEL_ALLOWLIST, TOKEN_BUDGET, COST_BUDGET and MODEL_PRICES_FILE: a bad one stops
    the app here."""
    config = app.config
    try:
        models = parse_patterns(config["MODEL_ALLOWLIST"])
    except ValueError as e:
        raise ConfigError(f"MODEL_ALLOWLIST: {e}") from None
    budgets = {}
    for name in ("TOKEN_BUDGET", "COST_BUDGET"):
        text = config[name]
        try:
            budgets[name] = parse_budget(text, dollars=name == "COST_BUDGET") if text else None
        except ValueError as e:
            raise ConfigError(f"{name}: {e} Got {text!r}") from None
    app.extensions[EXTENSION] = Governance(
        Limits(models, budgets["TOKEN_BUDGET"], budgets["COST_BUDGET"]),
        Prices.load(config["MODEL_PRICES_FILE"]),
    )
    reservations.init_reservations(app)


def governance() -> Governance:
    return current_app.extensions[EXTENSION]


_OWN_LIMITS = select(UserLimits).where(UserLimits.user_id == bindparam("user_id"))


def limits_for(user_id: int) -> Limits:
    """The user's limits: their own as the caller's lookup read them (auth.access), else as
    they are now."""
    read, own = read_limits(user_id)
    if not read:
        own = db.session.scalar(_OWN_LIMITS, {"user_id": user_id})
    return _applied(own)


def _applied(own) -> Limits:
    """`own`: a UserLimits, or a row of its limits' columns; None: the defaults."""
    defaults = governance().defaults
    if own is None:
        return defaults
    return Limits(
        tuple(own.models) if own.models is not None else defaults.models,
        _own_budget(own.token_budget, defaults.tokens, dollars=False),
        _own_budget(own.cost_budget, defaults.cost, dollars=True),
    )


def _own_budget(text: str | None, default: Budget | None, *, dollars: bool) -> Budget | None:
    return default if text is None else parse_budget(text, dollars=dollars)


def unknown_model(user_id: int, name: str) -> str:
    """What an unknown model name is told: the models usable now that this user may use (never
    those outside their allowlist)."""
    limits = limits_for(user_id)
    usable = [
        entry["id"]
        for entry in registry().catalogue()
        if entry["available"] and limits.allows(entry["provider"], entry["model"])
    ]
    return f"Unknown model {name!r}. Available models: {', '.join(usable) or 'none'}"


def allowed_catalogue(user_id: int) -> list[dict]:
    """The model catalogue's entries this user may use."""
    limits = limits_for(user_id)
    return [e for e in catalogue() if limits.allows(e["provider"], e["model"])]


def _refuse(status: int, reason: str, message: str, retry_after: int | None = None):
    REFUSED.labels(reason).inc()
    raise Refused(status, reason, message, retry_after)


def admit(user_id: int, provider: str, model: str | None) -> Limits:
    """The caller's limits, once a model they may not use is refused (Refused: 403). Budgets
    are checked as the call reserves its estimate (reservations.reserve_call)."""
    limits = limits_for(user_id)
    if not limits.allows(provider, model):
        name = f"{provider}/{model}" if model else provider
        _refuse(403, "model_not_allowed", f"Model '{name}' is not allowed for your account")
    return limits


def budget_status(user_id: int) -> dict:
    """The caller's budgets as /api/usage shows them: each one's limit as written, what is
    used of it this period, and when it resets; None where unlimited."""
    limits = limits_for(user_id)
    now = clock.now()
    used = ledger.used(user_id, limits.tokens, limits.cost, now)

    def status(budget: Budget | None, spent) -> dict | None:
        if budget is None:
            return None
        return {"limit": budget.text, "used": spent, "resets_at": budget.window(now)[1]}

    return {
        "tokens": status(limits.tokens, used.tokens),
        "cost": status(limits.cost, float(used.dollars)),
    }


def _text(budget: Budget | None) -> str:
    return budget.text if budget is not None else UNLIMITED


def own_limits(user) -> dict:
    """A user's own limits as set (null: the default), and the limits that apply."""
    own = db.session.scalar(_OWN_LIMITS, {"user_id": user.id})
    applied = _applied(own)
    return {
        "user_id": user.id,
        "models": own.models if own is not None else None,
        "token_budget": own.token_budget if own is not None else None,
        "cost_budget": own.cost_budget if own is not None else None,
        "effective": {
            "models": list(applied.models),
            "token_budget": _text(applied.tokens),
            "cost_budget": _text(applied.cost),
        },
    }


def _normal(text: str | None, *, dollars: bool) -> str | None:
    return None if text is None else _text(parse_budget(text, dollars=dollars))


def set_limits(
    user_id: int, models: list[str] | None, token_budget: str | None, cost_budget: str | None
) -> bool:
    """Replace a user's own limits (all None: back to the defaults). False if the user is gone."""
    values = {
        "models": models,
        "token_budget": _normal(token_budget, dollars=False),
        "cost_budget": _normal(cost_budget, dollars=True),
        "updated_at": clock.now(),
    }
    table = UserLimits.__table__
    if all(values[k] is None for k in ("models", "token_budget", "cost_budget")):
        statement = delete(table).where(table.c.user_id == user_id)
    else:
        insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(table)
            .values(user_id=user_id, **values)
            .on_conflict_do_update(index_elements=[table.c.user_id], set_=values)
        )
    try:
        db.session.execute(statement)
        db.session.commit()
    except IntegrityError:  # the user was deleted meanwhile
        db.session.rollback()
        return False
    forget_limits(user_id)
    return True
