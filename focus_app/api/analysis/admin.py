"""Dead-letter view: analysis jobs by status; the replay of a failed one or of every failed one a
filter matches (the same service functions as the `analysis.replay` task, published after each
commit); cancelling a pending one."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from marshmallow import validate

from focus_app.api.analysis.schemas import CONTEXT_TYPE, AnalysisJobSchema
from focus_app.api.auth import require_admin
from focus_app.api.base import Args, Blueprint, UtcDateTime
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session
from focus_app.models.analysis import JOB_STATUSES, AnalysisJob
from focus_app.services.analysis import jobs, recovery
from focus_app.services.analysis.recovery import REPLAY_PAGE_SIZE, REPLAY_SAMPLE_SIZE, BulkReplay
from focus_app.services.jobkit.errors import Conflict
from focus_app.services.jobkit.pagination import Page
from workers.publish import publish_analysis_runs

URL_PREFIX = "/admin/analysis-jobs"
blp = Blueprint("admin_analysis", __name__, description="Analysis jobs for operators")
blp.before_request(require_admin)


class AdminJobArgsSchema(PageArgsSchema):
    status = ma.fields.String(load_default=None, validate=validate.OneOf(JOB_STATUSES))
    user_id = ma.fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    context_type = ma.fields.String(load_default=None, validate=CONTEXT_TYPE)
    archived = ma.fields.Boolean(load_default=False, metadata={"description": "archived dead letters"})


class AdminJobSchema(AnalysisJobSchema):
    user_id = ma.fields.String()
    celery_task_id = ma.fields.String(allow_none=True)
    archived_at = ma.fields.DateTime(allow_none=True)


AdminJobPageSchema = page_schema(AdminJobSchema, "AnalysisJobPage")


@blp.route("", methods=["GET"])
@blp.doc(security=[{"adminKey": []}])
@blp.arguments(AdminJobArgsSchema, location="query")
@blp.response(200, AdminJobPageSchema)
def list_jobs(args: Args) -> Page[AnalysisJob]:
    """Analysis jobs newest first, filtered by status (status=failed: the dead-letter list)"""
    return jobs.list_jobs(db_session(), **args)


class ReplayedSchema(ma.Schema):
    job_id = ma.fields.UUID()
    status = ma.fields.String(metadata={"description": "the job's status now: pending"})
    task_id = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "the analysis.run message; null when the broker is down (the sweeper "
            "publishes the pending job within ANALYSIS_REPUBLISH_AFTER_SECONDS)"
        },
    )


@blp.route("/<uuid:job_id>/replay", methods=["POST"])
@blp.doc(security=[{"adminKey": []}])
@blp.response(202, ReplayedSchema)
@blp.alt_response(404, description="No such analysis job")
@blp.alt_response(409, description="The job is not failed, or its user and context already have an open job")
def replay(job_id: uuid.UUID) -> dict[str, Any]:
    """Replay a dead-lettered (failed) job: back to pending with a fresh attempt budget, published"""
    result = recovery.replay_failed(db_session(), job_id)
    if not result.replayed:
        reason = result.skipped.get(str(job_id), "job is not failed")
        raise Conflict(f"analysis job {job_id} not replayed: {reason}")
    (task_id,) = publish_analysis_runs(result.replayed)
    return {"job_id": job_id, "status": "pending", "task_id": task_id}


class BulkReplayArgsSchema(ma.Schema):
    error = ma.fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "a piece of the job's error, any case"},
    )
    context_type = ma.fields.String(load_default=None, validate=CONTEXT_TYPE)
    user_id = ma.fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    failed_since = UtcDateTime(load_default=None, metadata={"description": "failed at or after"})
    failed_until = UtcDateTime(load_default=None, metadata={"description": "failed before"})
    dry_run = ma.fields.Boolean(
        load_default=True, metadata={"description": "true (default): only count and show a sample"}
    )

    @ma.validates_schema
    def window(self, data: dict[str, Any], **kwargs: Any) -> None:
        since, until = data.get("failed_since"), data.get("failed_until")
        if since and until and since >= until:
            raise ma.ValidationError("must be after failed_since", field_name="failed_until")


class BulkReplaySchema(ma.Schema):
    dry_run = ma.fields.Boolean()
    matched = ma.fields.Integer(metadata={"description": "failed, unarchived jobs the filter matches"})
    sample = ma.fields.List(
        ma.fields.Nested(AdminJobSchema),
        metadata={"description": f"dry run: the {REPLAY_SAMPLE_SIZE} most recent of them"},
    )
    run_id = ma.fields.UUID(
        allow_none=True, metadata={"description": "the replay's job_runs row (job analysis.replay)"}
    )
    status = ma.fields.String(
        allow_none=True, metadata={"description": "success, or cancelled by an operator between pages"}
    )
    replayed = ma.fields.Integer(metadata={"description": "jobs back to pending, each exactly once"})
    skipped = ma.fields.Integer(
        metadata={"description": "left failed: their user and context have an open job"}
    )
    published = ma.fields.Integer(
        metadata={"description": "analysis.run messages sent (the sweeper publishes the rest)"}
    )
    pages = ma.fields.Integer(metadata={"description": f"transactions of up to {REPLAY_PAGE_SIZE} jobs"})


@blp.route("/replay", methods=["POST"])
@blp.doc(security=[{"adminKey": []}])
@blp.arguments(BulkReplayArgsSchema)
@blp.response(200, BulkReplaySchema)
def replay_matching(body: Args) -> BulkReplay:
    """Replay every dead letter a filter matches (dry_run, the default: count and sample only)"""
    dry_run = body.pop("dry_run")
    return recovery.replay_matching(
        db_session(),
        recovery.ReplayFilter(**body),
        dry_run=dry_run,
        trigger="api",
        task_id=None,
        publish=publish_analysis_runs,
    )


@blp.route("/<uuid:job_id>/cancel", methods=["POST"])
@blp.doc(security=[{"adminKey": []}])
@blp.response(200, AdminJobSchema)
@blp.alt_response(404, description="No such analysis job")
@blp.alt_response(409, description="The job is not pending (it runs, ran or was cancelled already)")
def cancel(job_id: uuid.UUID) -> AnalysisJob:
    """Cancel a pending job: it never runs, its message (if delivered) does nothing"""
    return recovery.cancel_job(db_session(), job_id)
