"""Tasks a focus session can be about."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from focus_app.api.auth import current_user_id, require_user
from focus_app.api.base import Args, Blueprint
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session
from focus_app.models import Task
from focus_app.services.focus import study_tasks
from focus_app.services.jobkit.pagination import Page

URL_PREFIX = "/tasks"
blp = Blueprint("tasks", __name__, description="What a focus session is about")
blp.before_request(require_user)


class TaskCreateSchema(ma.Schema):
    title = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))
    course = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))
    task_type = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=50),
        metadata={"example": "assignment"},
    )


class TaskSchema(ma.Schema):
    id = ma.fields.UUID()
    title = ma.fields.String()
    course = ma.fields.String(allow_none=True)
    task_type = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()


TaskPageSchema = page_schema(TaskSchema, "TaskPage")


@blp.route("", methods=["POST"])
@blp.arguments(TaskCreateSchema)
@blp.response(201, TaskSchema)
def create_task(body: Args) -> Task:
    """Create a task"""
    return study_tasks.create_task(db_session(), current_user_id(), **body)


@blp.route("", methods=["GET"])
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, TaskPageSchema)
def list_tasks(args: Args) -> Page[Task]:
    """List the caller's tasks, newest first"""
    return study_tasks.list_tasks(db_session(), current_user_id(), **args)
