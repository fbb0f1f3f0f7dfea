from datetime import date, timedelta

from flask import request
from flask.views import MethodView
from flask_smorest import abort

from .. import clock
from ..api import Blueprint
from ..auth.access import current_user
from ..extensions import db
from ..models import MAX_ID, User
from ..user.service import visible_or_404
from . import ledger
from .policy import budget_status, own_limits, set_limits
from .schemas import (
    AdminUsageArgsSchema,
    AdminUsageSchema,
    LimitsSchema,
    UsageArgsSchema,
    UsageSchema,
)

SPAN = timedelta(days=29)  # 30 days, both ends included

usage_blp = Blueprint(
    "usage",
    __name__,
    url_prefix="/api/usage",
    description="Your tokens and spending, and your budgets.",
)
admin_blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/api/admin",
    description="Everyone's usage, and each user's models and budgets (admins only).",
)


def _span(args) -> tuple[date, date]:
    """The days asked for: `since` to `until` inclusive, by default the 30 days to `until`
    (today by default)."""
    until = args.get("until") or clock.now().date()
    since = args.get("since") or max(until, date.min + SPAN) - SPAN
    if since > until:
        abort(
            422,
            message="since: Must not be after until.",
            errors={"query": {"since": ["Must not be after until."]}},
        )
    return since, until


@usage_blp.route("")
class Usage(MethodView):
    @usage_blp.login_required(keys=True)
    @usage_blp.arguments(UsageArgsSchema(), location="query")
    @usage_blp.response(200, UsageSchema)
    def get(self, args):
        """Your usage per day or model, and what is left of your budgets"""
        since, until = _span(args)
        return {
            "rows": ledger.report(since, until, args["group_by"], current_user.id),
            "budget": budget_status(current_user.id),
        }


@admin_blp.route("/usage")
class AdminUsage(MethodView):
    @admin_blp.login_required(admin=True)
    @admin_blp.arguments(AdminUsageArgsSchema(), location="query")
    @admin_blp.response(200, AdminUsageSchema)
    def get(self, args):
        """Everyone's usage (or one user's) per user, model or day"""
        since, until = _span(args)
        return {"rows": ledger.report(since, until, args["group_by"], args.get("user_id"))}


@admin_blp.route(f"/users/<int(min=1, max={MAX_ID}):user_id>/limits")
class UserLimits(MethodView):
    @admin_blp.login_required(admin=True)
    @admin_blp.response(200, LimitsSchema)
    @admin_blp.errors(404)
    def get(self, user_id):
        """A user's models and budgets"""
        return own_limits(_user_or_404(user_id))

    @admin_blp.login_required(admin=True)
    @admin_blp.arguments(LimitsSchema())
    @admin_blp.response(200, LimitsSchema)
    @admin_blp.errors(404)
    def put(self, data, user_id):
        """Set a user's models and budgets (null or absent: the server's default)"""
        if not request.get_data(cache=True):  # `{}` resets to the defaults; no body is a mistake
            abort(
                422,
                message="Send the limits as a JSON body",
                errors={"json": {"_schema": ["A JSON body is required."]}},
            )
        user = _user_or_404(user_id)
        if not set_limits(user.id, data["models"], data["token_budget"], data["cost_budget"]):
            abort(404, message="User not found")  # deleted meanwhile
        return own_limits(user)


def _user_or_404(user_id: int) -> User:
    return visible_or_404(db.session.get(User, user_id))
