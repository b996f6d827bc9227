"""Admin: model usage and flow control for the operator page — tokens and cost per day and job
family, calls waiting for the shared limit, provider back-offs, deferred analyses."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from focus_app.api.auth import require_admin
from focus_app.api.base import Args, Blueprint
from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.jobkit.llm_flow import Limits
from focus_app.services.ops import llm_usage

URL_PREFIX = "/admin"
blp = Blueprint("admin_llm_usage", __name__, description="Model usage and flow control (admin key)")
blp.before_request(require_admin)


class UsageArgsSchema(ma.Schema):
    days = ma.fields.Integer(load_default=7, validate=validate.Range(min=1, max=90))


class LimitsSchema(ma.Schema):
    tokens_per_minute = ma.fields.Integer(allow_none=True, metadata={"description": "null: unlimited"})
    requests_per_minute = ma.fields.Integer(allow_none=True, metadata={"description": "null: unlimited"})
    user_daily_tokens = ma.fields.Integer(allow_none=True, metadata={"description": "null: unlimited"})
    window_seconds = ma.fields.Integer(metadata={"description": "the limits count over this window (60)"})


class WindowSchema(ma.Schema):
    tokens = ma.fields.Integer(metadata={"description": "tokens counting in the current window"})
    requests = ma.fields.Integer(metadata={"description": "calls counting in the current window"})
    backoff_seconds = ma.fields.Float(metadata={"description": "a provider's back-off still to run"})
    waiting = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Integer(),
        metadata={"description": "waiting calls per family"},
    )


class WaitingJobsSchema(ma.Schema):
    waiting = ma.fields.Integer(metadata={"description": "pending until their turn (no attempt used)"})
    deferred = ma.fields.Integer(metadata={"description": "over the user's daily budget, until the next day"})


class UsageDaySchema(ma.Schema):
    day = ma.fields.Date(metadata={"description": "UTC day"})
    family = ma.fields.String(metadata={"enum": ["analysis", "consolidation", "brief"]})
    calls = ma.fields.Integer()
    tokens_in = ma.fields.Integer()
    tokens_out = ma.fields.Integer()
    cost_usd = ma.fields.Float()
    waits = ma.fields.Integer(metadata={"description": "calls that waited for the limit or a back-off"})
    backoffs = ma.fields.Integer(metadata={"description": "provider answers 429 / 503 / 529"})
    deferrals = ma.fields.Integer(metadata={"description": "calls refused by a user's daily budget"})


class UsageSchema(ma.Schema):
    generated_at = ma.fields.DateTime()
    limits = ma.fields.Nested(LimitsSchema)
    window = ma.fields.Nested(WindowSchema, allow_none=True, metadata={"description": "null: Redis down"})
    analysis_jobs = ma.fields.Nested(WaitingJobsSchema)
    days = ma.fields.List(ma.fields.Nested(UsageDaySchema), metadata={"description": "newest day first"})
    warnings = ma.fields.List(ma.fields.String())


@blp.route("/llm-usage", methods=["GET"])
@blp.doc(security=[{"adminKey": []}])
@blp.arguments(UsageArgsSchema, location="query")
@blp.response(200, UsageSchema)
def usage(args: Args) -> dict[str, Any]:
    """Model calls, tokens and cost per day and family; the shared limit now; waiting and deferred jobs"""
    return llm_usage.overview(db_session(), redis_client(), Limits.from_settings(settings()), args["days"])
