"""Admin: job-run history of every periodic or manual job, cancelling a running one, and the
per-job enable switches."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from marshmallow import validate

from beat_schedule import build_beat_schedule
from focus_app.api.auth import require_admin
from focus_app.api.base import Args, Blueprint, UtcDateTime
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session, settings
from focus_app.models import JobRun
from focus_app.models.jobs import RUN_STATUSES, JobSetting
from focus_app.services.jobkit import runs, switches
from focus_app.services.jobkit.pagination import Page
from focus_app.services.ops import control

URL_PREFIX = "/admin"
blp = Blueprint("admin_jobs", __name__, description="Job-run history and job switches (admin key)")
blp.before_request(require_admin)
ADMIN_DOC: dict[str, Any] = {"security": [{"adminKey": []}]}


class JobRunArgsSchema(PageArgsSchema):
    job = ma.fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    status = ma.fields.String(load_default=None, validate=validate.OneOf(RUN_STATUSES))
    since = UtcDateTime(load_default=None, metadata={"description": "started at or after"})
    until = UtcDateTime(load_default=None, metadata={"description": "started before"})

    @ma.validates_schema
    def window(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ma.ValidationError("must be after since", field_name="until")


class RunSummarySchema(ma.Schema):
    id = ma.fields.UUID()
    trigger = ma.fields.String()
    scope = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    started_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)
    duration_ms = ma.fields.Integer(allow_none=True)
    units_total = ma.fields.Integer()
    units_done = ma.fields.Integer()
    succeeded = ma.fields.Integer()
    failed = ma.fields.Integer()
    skipped = ma.fields.Integer()
    error = ma.fields.String(allow_none=True)


class JobRunSchema(RunSummarySchema):
    job_name = ma.fields.String()
    result = ma.fields.Dict(allow_none=True)


JobRunPageSchema = page_schema(JobRunSchema, "JobRunPage")


class JobSettingSchema(ma.Schema):
    job_name = ma.fields.String()
    enabled = ma.fields.Boolean()
    updated_at = ma.fields.DateTime(allow_none=True)


class JobSettingUpdateSchema(ma.Schema):
    enabled = ma.fields.Boolean(required=True)


@blp.route("/job-runs", methods=["GET"])
@blp.doc(**ADMIN_DOC)
@blp.arguments(JobRunArgsSchema, location="query")
@blp.response(200, JobRunPageSchema)
def job_runs(args: Args) -> Page[JobRun]:
    """Job runs, newest first, filtered by job, status and start time"""
    return runs.list_runs(db_session(), **args)


@blp.route("/job-runs/<uuid:run_id>/cancel", methods=["POST"])
@blp.doc(**ADMIN_DOC)
@blp.response(200, JobRunSchema)
@blp.alt_response(404, description="No such run")
@blp.alt_response(409, description="The run is not running (finished, skipped or already cancelled)")
def cancel_job_run(run_id: uuid.UUID) -> JobRun:
    """Cancel a running run: no unit of it starts after this answer; units already running
    finish or roll back whole; the run ends `cancelled` with the counts so far and
    `result.cancelled_units`"""
    return control.cancel_run(db_session(), run_id)


def _periodic_jobs() -> set[str]:
    """The jobs beat fires: the schedule is the one place they are declared."""
    return {entry["task"] for entry in build_beat_schedule(settings()).values()}


@blp.route("/job-settings", methods=["GET"])
@blp.doc(**ADMIN_DOC)
@blp.response(200, JobSettingSchema(many=True))
def list_job_settings() -> list[dict[str, Any]]:
    """Enable switch of every periodic job"""
    return switches.list_settings(db_session(), _periodic_jobs())


@blp.route("/job-settings/<string:job_name>", methods=["PUT"])
@blp.doc(**ADMIN_DOC)
@blp.arguments(JobSettingUpdateSchema)
@blp.response(200, JobSettingSchema)
def update_job_setting(body: Args, job_name: str) -> JobSetting:
    """Enable or disable a periodic job at run time (a disabled beat run is recorded as skipped)"""
    return switches.set_enabled(db_session(), job_name, body["enabled"], _periodic_jobs())
