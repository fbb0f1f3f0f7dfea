import marshmallow as ma
from marshmallow import fields, validate

from ..models import MAX_ID
from .policy import (
    COST_BUDGET_TEXT,
    MAX_PATTERNS,
    PATTERN_TEXT,
    TOKEN_BUDGET_TEXT,
    parse_budget,
    parse_patterns,
)


class UsageArgsSchema(ma.Schema):
    since = fields.Date(
        metadata={"description": "First day (UTC), YYYY-MM-DD; default: 29 days before `until`"}
    )
    until = fields.Date(metadata={"description": "Last day (UTC), YYYY-MM-DD; default: today"})
    group_by = fields.String(
        load_default="day",
        validate=validate.OneOf(("day", "model")),
        metadata={"description": "One row per day or per model"},
    )


class AdminUsageArgsSchema(UsageArgsSchema):
    group_by = fields.String(
        load_default="user",
        validate=validate.OneOf(("user", "model", "day")),
        metadata={"description": "One row per user (with email), model or day"},
    )
    user_id = fields.Integer(
        strict=False,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "Only this user's usage"},
    )


class UsageRowSchema(ma.Schema):
    day = fields.String(metadata={"description": "YYYY-MM-DD (grouped by day)"})
    model = fields.String(metadata={"description": "provider/model (grouped by model)"})
    user_id = fields.Integer(metadata={"description": "Grouped by user"})
    email = fields.String(metadata={"description": "Grouped by user"})
    calls = fields.Integer(metadata={"description": "Replies stored"})
    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    cost_usd = fields.Float(
        allow_none=True, metadata={"description": "Of the priced replies; null if none was"}
    )


class BudgetStatusSchema(ma.Schema):
    limit = fields.String(metadata={"description": "As set, e.g. 30/day"})
    used = fields.Raw(metadata={"type": "number", "description": "Tokens, or US dollars, so far"})
    resets_at = fields.DateTime(metadata={"description": "When the period ends (UTC)"})


class BudgetsSchema(ma.Schema):
    tokens = fields.Nested(BudgetStatusSchema, allow_none=True)
    cost = fields.Nested(BudgetStatusSchema, allow_none=True)


class UsageSchema(ma.Schema):
    rows = fields.List(fields.Nested(UsageRowSchema))
    budget = fields.Nested(BudgetsSchema, metadata={"description": "null where unlimited"})


class AdminUsageSchema(ma.Schema):
    rows = fields.List(fields.Nested(UsageRowSchema))


def _patterns(value: list[str]) -> None:
    try:
        parse_patterns(value)
    except ValueError as e:
        raise ma.ValidationError(str(e)) from None


def _budget(dollars: bool):
    def check(value: str) -> None:
        try:
            parse_budget(value, dollars=dollars)
        except ValueError as e:
            raise ma.ValidationError(str(e)) from None

    return check


BUDGET_TEXT = "N/day, N/week or N/month, or unlimited; null: the server's default"


class LimitsSchema(ma.Schema):
    """A user's own limits: null fields follow the server's defaults."""

    user_id = fields.Integer(dump_only=True)
    models = fields.List(
        fields.String(metadata={"pattern": f"^{PATTERN_TEXT}$"}),
        allow_none=True,
        load_default=None,
        validate=_patterns,
        metadata={
            "description": "Model patterns ([] allows none); null: MODEL_ALLOWLIST",
            "maxItems": MAX_PATTERNS,
        },
    )
    token_budget = fields.String(
        allow_none=True,
        load_default=None,
        validate=_budget(dollars=False),
        metadata={
            "description": f"Tokens: {BUDGET_TEXT} (TOKEN_BUDGET)",
            "pattern": f"^{TOKEN_BUDGET_TEXT}$",
        },
    )
    cost_budget = fields.String(
        allow_none=True,
        load_default=None,
        validate=_budget(dollars=True),
        metadata={
            "description": f"US dollars: {BUDGET_TEXT} (COST_BUDGET)",
            "pattern": f"^{COST_BUDGET_TEXT}$",
        },
    )
    effective = fields.Dict(
        dump_only=True,
        metadata={"description": "What applies: these, or the defaults where null"},
    )
