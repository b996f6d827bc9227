"""Admin: the operator page's data — each periodic job's last and next run and success rate, and
the retry queue. Dead letters are `GET /admin/analysis-jobs?status=failed` (replay beside it)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from beat_schedule import periodic_entries
from focus_app.api.auth import require_admin
from focus_app.api.base import Args, Blueprint
from focus_app.api.ops.job_runs import RunSummarySchema
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session, redis_client, settings
from focus_app.models.intelligence import RETRY_STATUSES, JobRetryQueue
from focus_app.services.jobkit.pagination import Page
from focus_app.services.ops import periodic

URL_PREFIX = "/admin"
blp = Blueprint("admin_operations", __name__, description="Operator overview: periodic jobs, retry queue")
blp.before_request(require_admin)
ADMIN_DOC: dict[str, Any] = {"security": [{"adminKey": []}]}


class PeriodicJobSchema(ma.Schema):
    name = ma.fields.String(metadata={"description": "the entry in beat_schedule.py"})
    task = ma.fields.String()
    schedule = ma.fields.String(metadata={"description": "in words; crontab times in FOCUS_TIMEZONE"})
    interval_seconds = ma.fields.Integer(allow_none=True, metadata={"description": "null for a crontab"})
    enabled = ma.fields.Boolean()
    last_run = ma.fields.Nested(RunSummarySchema, allow_none=True)
    last_success_at = ma.fields.DateTime(allow_none=True)
    success_rate = ma.fields.Float(
        allow_none=True, metadata={"description": "share of the last success_rate_window finished runs"}
    )
    runs_counted = ma.fields.Integer()
    runs_succeeded = ma.fields.Integer()
    next_run_at = ma.fields.DateTime()
    due = ma.fields.Boolean(metadata={"description": "overdue or never run: beat fires it at its next tick"})
    recent_runs = ma.fields.List(ma.fields.Nested(RunSummarySchema))


class PeriodicJobsSchema(ma.Schema):
    timezone = ma.fields.String()
    generated_at = ma.fields.DateTime()
    success_rate_window = ma.fields.Integer()
    warnings = ma.fields.List(ma.fields.String())
    jobs = ma.fields.List(ma.fields.Nested(PeriodicJobSchema))


class RetryQueueArgsSchema(PageArgsSchema):
    job = ma.fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    status = ma.fields.String(load_default=None, validate=validate.OneOf(RETRY_STATUSES))
    user_id = ma.fields.String(load_default=None, validate=validate.Length(min=1, max=128))


class RetryEntrySchema(ma.Schema):
    id = ma.fields.UUID()
    job_name = ma.fields.String()
    user_id = ma.fields.String()
    week_of = ma.fields.Date()
    status = ma.fields.String(metadata={"enum": list(RETRY_STATUSES)})
    retry_count = ma.fields.Integer(metadata={"description": "retries made so far"})
    max_retries = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    next_retry_at = ma.fields.DateTime()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


RetryEntryPageSchema = page_schema(RetryEntrySchema, "RetryEntryPage")


@blp.route("/periodic-jobs", methods=["GET"])
@blp.doc(**ADMIN_DOC)
@blp.response(200, PeriodicJobsSchema)
def periodic_jobs() -> dict[str, Any]:
    """Every periodic job: switch, last run, last success, success rate, recent runs, next run"""
    config = settings()
    return periodic.periodic_jobs(db_session(), redis_client(), periodic_entries(config), config.timezone)


@blp.route("/retry-queue", methods=["GET"])
@blp.doc(**ADMIN_DOC)
@blp.arguments(RetryQueueArgsSchema, location="query")
@blp.response(200, RetryEntryPageSchema)
def retry_queue(args: Args) -> Page[JobRetryQueue]:
    """Retry-queue entries: pending ones soonest due first, then parked (exhausted) ones"""
    return periodic.retry_queue(db_session(), **args)
