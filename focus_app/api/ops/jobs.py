"""State, progress and result of a task the caller started."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app, g
from flask_smorest import abort

from focus_app.api.auth import is_admin_request, require_admin, require_user
from focus_app.api.base import Blueprint
from focus_app.extensions import db_session, redis_client
from focus_app.services.ops import run_state, task_owners

URL_PREFIX = "/jobs"
blp = Blueprint("jobs", __name__, description="Tasks started through the API")


@blp.before_request
def authenticate() -> None:
    """The admin key sees every task; a user only the tasks they started."""
    if is_admin_request():
        require_admin()
    else:
        require_user()


class JobStateSchema(ma.Schema):
    task_id = ma.fields.String()
    name = ma.fields.String(allow_none=True)
    state = ma.fields.String(
        metadata={"enum": ["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]}
    )
    progress = ma.fields.Dict(allow_none=True)
    result = ma.fields.Raw(allow_none=True)
    error = ma.fields.String(allow_none=True)


@blp.route("/<string:task_id>", methods=["GET"])
@blp.doc(security=[{"bearerAuth": []}, {"adminKey": []}])
@blp.response(200, JobStateSchema)
def job_state(task_id: str) -> dict[str, Any]:
    """State of a task the caller started (PENDING until a worker picks it up); for a task that
    started a job run, the run's state in PostgreSQL"""
    owner = task_owners.owner_of(redis_client(), task_id)
    caller = task_owners.ADMIN_OWNER if getattr(g, "admin", False) else g.user_id
    if owner is None or (caller != task_owners.ADMIN_OWNER and owner != caller):
        abort(404, message=f"no job {task_id} started by you")
    result = current_app.extensions["celery"].AsyncResult(task_id)
    state = result.state
    info = result.info
    answer = {
        "task_id": task_id,
        "name": result.name,
        "state": state,
        "progress": info if state == "PROGRESS" and isinstance(info, dict) else None,
        "result": info if state == "SUCCESS" else None,
        "error": repr(info) if state == "FAILURE" else None,
    }
    recorded = run_state.recorded_state(db_session(), task_id)
    if recorded is None or recorded.state == state or (recorded.state == "STARTED" and state == "PROGRESS"):
        return answer
    # PostgreSQL knows better (Redis lost the state, or a connection loss marked it REVOKED).
    return {
        **answer,
        "state": recorded.state,
        "progress": recorded.result if recorded.state == "STARTED" else None,
        "result": recorded.result if recorded.state == "SUCCESS" else None,
        "error": recorded.error if recorded.state == "FAILURE" else None,
    }
