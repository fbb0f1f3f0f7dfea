"""Usage per user, UTC day and model: the `usage_daily` table, one row each, added to by one
upsert in the transaction that stores a reply. Budget checks and reports read it, never the
messages.

Costs are kept as whole nano-dollars (exact sums on every database); a row's cost is null while
none of its replies had a known price, and sums of rows count only the priced replies.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import Select, bindparam, case, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import UsageDaily, User

if TYPE_CHECKING:
    from .policy import Budget

NANO = Decimal(10**9)
GROUPS = ("day", "model", "user")


def nanodollars(cost: Decimal | None) -> int | None:
    return None if cost is None else int((cost * NANO).to_integral_value())


def dollars(nano) -> float | None:
    return None if nano is None else float(Decimal(int(nano)) / NANO)


@cache
def _upsert(dialect: str):
    """One reply's usage added to its row, built once per dialect."""
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(UsageDaily.__table__)
    return _added(insert.values(user_id=bindparam("user_id"), calls=1, **_VALUES))


def upsert_for(user_ids: Select):
    """PostgreSQL: one reply's usage (Entry.params but its user) added to the row of each user
    that `user_ids` (a select of one column) gives: a part of a larger statement."""
    c = UsageDaily.__table__.c
    columns = [c.user_id, c.calls, *(c[name] for name in _VALUES)]
    values = user_ids.add_columns(literal(1), *_VALUES.values())
    return _added(pg_insert(UsageDaily.__table__).from_select(columns, values))


_c = UsageDaily.__table__.c
_VALUES = {
    "day": bindparam("day", type_=_c.day.type),
    "model": bindparam("model", type_=_c.model.type),
    "prompt_tokens": bindparam("prompt", type_=_c.prompt_tokens.type),
    "completion_tokens": bindparam("completion", type_=_c.completion_tokens.type),
    "cost_nanousd": bindparam("cost", type_=_c.cost_nanousd.type),
}


def _added(insert):
    """`insert` of a usage row, or its values added to the row already there."""
    c, new = _c, insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[c.user_id, c.day, c.model],
        set_={
            "calls": c.calls + 1,
            "prompt_tokens": c.prompt_tokens + new.prompt_tokens,
            "completion_tokens": c.completion_tokens + new.completion_tokens,
            "cost_nanousd": case(
                (new.cost_nanousd.is_(None), c.cost_nanousd),
                else_=func.coalesce(c.cost_nanousd, 0) + new.cost_nanousd,
            ),
        },
    )


@dataclass(frozen=True)
class Entry:
    """One reply's usage."""

    user_id: int
    day: date  # UTC
    model: str  # provider/model
    prompt: int
    completion: int
    cost: Decimal | None  # None: no known price

    def add(self) -> None:
        """Add it to its row, in the caller's transaction (not committed here)."""
        values = {"user_id": self.user_id, **self.params()}
        db.session.execute(_upsert(db.engine.dialect.name), values)

    def params(self) -> dict[str, object]:
        """Its values as the upserts' parameters, but its user."""
        return {
            "day": self.day,
            "model": self.model,
            "prompt": self.prompt,
            "completion": self.completion,
            "cost": nanodollars(self.cost),
        }


@dataclass(frozen=True)
class Used:
    tokens: int  # in the token budget's current period
    dollars: Decimal  # in the cost budget's current period


_t = UsageDaily.__table__.c
_USED = select(
    func.coalesce(
        func.sum(
            case((_t.day >= bindparam("tokens_from"), _t.prompt_tokens + _t.completion_tokens))
        ),
        0,
    ),
    func.coalesce(func.sum(case((_t.day >= bindparam("cost_from"), _t.cost_nanousd))), 0),
).where(_t.user_id == bindparam("user_id"), _t.day >= bindparam("earliest"))


def used(user_id: int, tokens: "Budget | None", cost: "Budget | None", now: datetime) -> Used:
    """What the user has used of each budget in its current period: one indexed query."""
    far = date.max
    tokens_from = tokens.window(now)[0] if tokens is not None else far
    cost_from = cost.window(now)[0] if cost is not None else far
    row = db.session.execute(
        _USED,
        {
            "user_id": user_id,
            "tokens_from": tokens_from,
            "cost_from": cost_from,
            "earliest": min(tokens_from, cost_from),
        },
    ).one()
    return Used(int(row[0]), Decimal(int(row[1])) / NANO)


def report(
    since: date, until: date, group_by: str, user_id: int | None = None
) -> list[dict[str, object]]:
    """Usage from `since` to `until` (inclusive), one row per day, model or user (with its
    email), ordered by it; of one user or, with user_id None, everyone."""
    key: Iterable = {
        "day": (_t.day,),
        "model": (_t.model,),
        "user": (_t.user_id, User.email),
    }[group_by]
    query = (
        select(
            *key,
            func.sum(_t.calls),
            func.sum(_t.prompt_tokens),
            func.sum(_t.completion_tokens),
            func.sum(_t.cost_nanousd),
        )
        .where(_t.day >= since, _t.day <= until)
        .group_by(*key)
        .order_by(*key)
    )
    if group_by == "user":
        query = query.join(User, User.id == _t.user_id)
    if user_id is not None:
        query = query.where(_t.user_id == user_id)
    rows = []
    for row in db.session.execute(query):
        *keys, calls, prompt, completion, cost = row
        if group_by == "day":
            named = {"day": keys[0].isoformat()}
        elif group_by == "model":
            named = {"model": keys[0]}
        else:
            named = {"user_id": keys[0], "email": keys[1]}
        rows.append(
            named
            | {
                "calls": int(calls),
                "prompt_tokens": int(prompt),
                "completion_tokens": int(completion),
                "cost_usd": dollars(cost),
            }
        )
    return rows
