"""Admin: trigger the weekly intelligence by hand, and its health (seed 004)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from flask_smorest import abort
from marshmallow import validate

from focus_app.api.auth import require_admin
from focus_app.api.base import Args, Blueprint
from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.focus.users import user_id_problem
from focus_app.services.intelligence import JOB_NAME as WEEKLY_JOB_NAME
from focus_app.services.intelligence import health as intelligence_health
from focus_app.services.intelligence import job as weekly_job
from focus_app.services.intelligence import weeks
from focus_app.services.ops.task_owners import ADMIN_OWNER
from workers.publish import publish

URL_PREFIX = "/admin/intelligence"
blp = Blueprint("admin_intelligence", __name__, description="Weekly intelligence operations (admin key)")
blp.before_request(require_admin)
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminKey": []}]
MAX_TRIGGER_USERS = 10_000
# 10,000 ids of the longest ASCII length (128 characters, quoted, comma) take 1.31 MB.
MAX_TRIGGER_BODY_BYTES = 2 * 1024 * 1024


def _valid_user_id(value: str) -> None:
    problem = user_id_problem(value)
    if problem:
        raise ma.ValidationError(problem)


class TriggerSchema(ma.Schema):
    user_ids = ma.fields.List(
        ma.fields.String(validate=_valid_user_id),
        load_default=None,
        validate=validate.Length(min=1, max=MAX_TRIGGER_USERS),
        metadata={"description": "Only these users (default: every user with generation enabled)"},
    )
    force_refresh = ma.fields.Boolean(
        load_default=False, metadata={"description": "Regenerate briefs that already exist"}
    )
    week_of = ma.fields.Date(
        load_default=None, metadata={"description": "Monday of an ended week (default: the week just ended)"}
    )


class TriggeredSchema(ma.Schema):
    task_id = ma.fields.String(metadata={"description": "Poll GET /api/v1/jobs/{task_id} with the admin key"})
    week_of = ma.fields.String()
    status = ma.fields.String()


class IntelligenceHealthSchema(ma.Schema):
    healthy = ma.fields.Boolean()
    score = ma.fields.Float()
    checks = ma.fields.Dict()
    timestamp = ma.fields.String()


@blp.route("/trigger", methods=["POST"])
@blp.doc(security=ADMIN_SECURITY)
@blp.body_limit(MAX_TRIGGER_BODY_BYTES)
@blp.arguments(TriggerSchema)
@blp.response(202, TriggeredSchema)
def trigger(body: Args) -> dict[str, Any]:
    """Start intelligence.weekly now (optionally for some users, a given week, or forced)

    The run is recorded first (a pending job run): with the broker down it is published later by
    intelligence.retry_failed, under the same task id.
    """
    latest = weeks.week_just_ended(datetime.now(UTC), settings().timezone)
    week_of = body["week_of"] or latest
    problem = weeks.week_of_problem(week_of, latest)
    if problem:
        abort(422, errors={"json": {"week_of": [problem]}}, message="invalid input, see errors")
    task_id = str(uuid.uuid4())
    kwargs = weekly_job.request_weekly(
        db_session(),
        task_id=task_id,
        week_of=week_of,
        user_ids=body["user_ids"],
        force_refresh=body["force_refresh"],
    )
    publish(WEEKLY_JOB_NAME, kwargs=kwargs, owner=ADMIN_OWNER, task_id=task_id)
    return {"task_id": task_id, "week_of": week_of.isoformat(), "status": "queued"}


@blp.route("/health", methods=["GET"])
@blp.doc(security=ADMIN_SECURITY)
@blp.response(200, IntelligenceHealthSchema)
def health() -> dict[str, Any]:
    """Health of the weekly intelligence: last run, success rate, timing, cache, errors"""
    return intelligence_health.health(db_session(), redis_client())
