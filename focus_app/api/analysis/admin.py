"""Dead-letter view: analysis jobs by status, and the replay of a failed one (the same service
function as the `analysis.replay` task, published after its commit)."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from marshmallow import validate

from focus_app.api.analysis.schemas import CONTEXT_TYPE, AnalysisJobSchema
from focus_app.api.auth import require_admin
from focus_app.api.base import Args, Blueprint
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session
from focus_app.models.analysis import JOB_STATUSES, AnalysisJob
from focus_app.services.analysis import jobs, recovery
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
