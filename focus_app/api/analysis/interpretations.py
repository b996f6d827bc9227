"""Profile interpretations: read (stale ones refresh in the background), manual refresh, job status."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask_smorest import abort

from focus_app.api.analysis.schemas import CONTEXT_TYPE, AnalysisDecisionSchema, AnalysisJobSchema, rules
from focus_app.api.auth import current_user_id, require_user
from focus_app.api.base import Args, Blueprint
from focus_app.extensions import db_session
from focus_app.models.analysis import AnalysisJob
from focus_app.services.analysis import jobs, triggers
from workers.publish import publish_analysis_runs

URL_PREFIX = "/profile"
blp = Blueprint("profile_analysis", __name__, description="Profile interpretations (seed 002)")
blp.before_request(require_user)


class InterpretationArgsSchema(ma.Schema):
    context_type = ma.fields.String(load_default=None, validate=CONTEXT_TYPE)


class InterpretationSchema(ma.Schema):
    context_type = ma.fields.String()
    interpretation = ma.fields.Dict()
    confidence = ma.fields.Float()
    messages_analyzed = ma.fields.Integer()
    analyzed_at = ma.fields.DateTime()


class ContextDecisionSchema(AnalysisDecisionSchema):
    context_type = ma.fields.String()


class InterpretationsSchema(ma.Schema):
    interpretations = ma.fields.List(ma.fields.Nested(InterpretationSchema))
    analysis = ma.fields.List(
        ma.fields.Nested(ContextDecisionSchema),
        metadata={"description": "per context: whether a refresh was enqueued (missing or older than 1 h)"},
    )


class AnalyzeSchema(ma.Schema):
    context_type = ma.fields.String(required=True, validate=CONTEXT_TYPE)


class RateLimitedSchema(ma.Schema):
    code = ma.fields.Integer()
    status = ma.fields.String()
    message = ma.fields.String()
    retry_after = ma.fields.Integer(metadata={"description": "seconds until a new analysis is allowed"})


class AnalyzeResponseSchema(ma.Schema):
    status = ma.fields.String(
        metadata={
            "enum": ["enqueued", "pending", "deferred"],
            "description": "deferred: the open job waits for the user's next day of model tokens "
            "(LLM_USER_DAILY_TOKENS); job.waiting_for and job.next_attempt_at say why and until when",
        }
    )
    job = ma.fields.Nested(AnalysisJobSchema)


@blp.route("/interpretations", methods=["GET"])
@blp.arguments(InterpretationArgsSchema, location="query")
@blp.response(200, InterpretationsSchema)
def interpretations(args: Args) -> dict[str, Any]:
    """The caller's interpretations; missing or stale ones are refreshed in the background"""
    rows, decisions = triggers.interpretations_for_view(
        db_session(), current_user_id(), args["context_type"], rules()
    )
    publish_analysis_runs(message for decision in decisions.values() for message in decision.to_publish)
    return {
        "interpretations": rows,
        "analysis": [{"context_type": context, **d.as_dict()} for context, d in decisions.items()],
    }


@blp.route("/analyze", methods=["POST"])
@blp.arguments(AnalyzeSchema)
@blp.response(202, AnalyzeResponseSchema)
@blp.alt_response(
    200, schema=AnalyzeResponseSchema, description="a job for this context is already open (or deferred)"
)
@blp.alt_response(
    429, schema=RateLimitedSchema, description="rate limited: one analysis per context per hour (Retry-After)"
)
def analyze(body: Args) -> tuple[dict[str, Any], int]:
    """Refresh now (high priority); rate limited to one analysis per context per hour"""
    decision = triggers.request_analysis(
        db_session(), current_user_id(), body["context_type"], "manual", rules()
    )
    if decision.status == "rate_limited":
        abort(
            429,
            message=f"one analysis per context per hour; retry in {decision.retry_after}s",
            retry_after=decision.retry_after,
            headers={"Retry-After": str(decision.retry_after)},
        )
    publish_analysis_runs(decision.to_publish)
    return {"status": decision.status, "job": decision.job}, (202 if decision.status == "enqueued" else 200)


@blp.route("/analyze/<uuid:job_id>", methods=["GET"])
@blp.response(200, AnalysisJobSchema)
def job_status(job_id: uuid.UUID) -> AnalysisJob:
    """Status, attempts, error and timings of one of the caller's analysis jobs"""
    return jobs.get_user_job(db_session(), current_user_id(), job_id)
