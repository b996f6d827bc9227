"""Schemas and rules shared by the chat, interpretation and admin resources (no blueprint)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from focus_app.extensions import settings
from focus_app.models.analysis import JOB_STATUSES, AnalysisJob
from focus_app.services.analysis.jobs import CONTEXT_TYPE_PATTERN, CONTEXT_TYPE_RULE, Rules

CONTEXT_TYPE = validate.Regexp(CONTEXT_TYPE_PATTERN, error=CONTEXT_TYPE_RULE)


def rules() -> Rules:
    return Rules.from_settings(settings())


class AnalysisDecisionSchema(ma.Schema):
    status = ma.fields.String(
        metadata={"enum": ["enqueued", "pending", "deferred", "rate_limited", "not_due"]}
    )
    job_id = ma.fields.String(allow_none=True)
    retry_after = ma.fields.Integer(allow_none=True, metadata={"description": "seconds, when rate limited"})


class AnalysisJobSchema(ma.Schema):
    id = ma.fields.UUID()
    context_type = ma.fields.String()
    priority = ma.fields.String()
    source = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(JOB_STATUSES)})
    outcome = ma.fields.String(allow_none=True, metadata={"enum": ["analysed", "insufficient_data"]})
    error = ma.fields.String(allow_none=True)
    attempts = ma.fields.Integer(metadata={"description": "attempts used; waiting for a turn uses none"})
    waiting_for = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "why the job waits: its turn under the shared model limit or a provider's "
            "back-off (pending), or the user's daily token budget (deferred); until next_attempt_at"
        },
    )
    waits = ma.fields.Integer(metadata={"description": "times the job waited for its turn or was deferred"})
    messages_analyzed = ma.fields.Integer(allow_none=True)
    analyser = ma.fields.String(allow_none=True)
    tokens_in = ma.fields.Integer()
    tokens_out = ma.fields.Integer()
    cost_usd = ma.fields.Float()
    created_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    completed_at = ma.fields.DateTime(allow_none=True)
    next_attempt_at = ma.fields.DateTime()
    duration_ms = ma.fields.Method("_duration_ms", allow_none=True)

    def _duration_ms(self, job: AnalysisJob) -> int | None:
        if job.started_at is None or job.completed_at is None:
            return None
        return int((job.completed_at - job.started_at).total_seconds() * 1000)
