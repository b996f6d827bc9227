"""Dead-letter view: analysis jobs by status (failed ones are replayed with analysis.replay)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from focus_app.api.analysis_common import CONTEXT_TYPE, AnalysisJobSchema
from focus_app.api.auth import require_admin
from focus_app.api.base import Blueprint
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session
from focus_app.models.analysis import JOB_STATUSES
from focus_app.services import analysis

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
def list_jobs(args):
    """Analysis jobs newest first, filtered by status (status=failed: the dead-letter list)"""
    items, total = analysis.list_jobs(db_session(), **args)
    return {"items": items, "total": total, "page": args["page"], "page_size": args["page_size"]}
