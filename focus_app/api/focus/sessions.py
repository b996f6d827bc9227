"""Focus sessions (seed 001): the seven endpoints under /api/v1/focus-sessions."""

from __future__ import annotations

import json
import uuid
from typing import Any

import marshmallow as ma
from marshmallow import validate
from sqlalchemy import Row

from focus_app.api.auth import current_user_id, handles_user_row, new_user_timezone, require_user
from focus_app.api.base import Args, Blueprint
from focus_app.api.pagination import PageArgsSchema, page_schema
from focus_app.extensions import db_session, db_statement, redis_client, settings
from focus_app.models import FocusSession
from focus_app.services.focus import profiles, sessions
from focus_app.services.jobkit.pagination import Page

URL_PREFIX = "/focus-sessions"
blp = Blueprint("focus_sessions", __name__, description="Focus (Pomodoro) sessions and analytics")
blp.before_request(require_user)

SESSION_TYPES = ("pomodoro", "deep_work", "study", "custom")
MAX_FOCUS_QUALITY_BYTES = 4096


class StartSessionSchema(ma.Schema):
    expected_duration = ma.fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=720),
        metadata={"description": "Planned minutes"},
    )
    task_id = ma.fields.UUID(load_default=None, allow_none=True)
    context = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"example": "Studying Chapter 5 - Biology"},
    )
    session_type = ma.fields.String(load_default="pomodoro", validate=validate.OneOf(SESSION_TYPES))


def _small_json(value: dict) -> None:
    if len(json.dumps(value)) > MAX_FOCUS_QUALITY_BYTES:
        raise ma.ValidationError(f"must serialise to at most {MAX_FOCUS_QUALITY_BYTES} bytes")


class EndSessionSchema(ma.Schema):
    was_completed = ma.fields.Boolean(required=True)
    focus_score = ma.fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1, max=5)
    )
    interruption_count = ma.fields.Integer(
        strict=True, load_default=None, validate=validate.Range(min=0, max=99)
    )
    break_minutes = ma.fields.Integer(strict=True, load_default=None, validate=validate.Range(min=0, max=720))
    cycles_completed = ma.fields.Integer(
        strict=True, load_default=None, validate=validate.Range(min=0, max=100)
    )
    session_notes = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    focus_quality = ma.fields.Dict(
        keys=ma.fields.String(validate=validate.Length(min=1, max=50)),
        load_default=None,
        validate=_small_json,
    )


class SessionSchema(ma.Schema):
    id = ma.fields.UUID()
    task_id = ma.fields.UUID(allow_none=True)
    start_time = ma.fields.DateTime()
    end_time = ma.fields.DateTime(allow_none=True)
    actual_start_time = ma.fields.DateTime(allow_none=True)
    actual_end_time = ma.fields.DateTime(allow_none=True)
    duration_minutes = ma.fields.Integer(allow_none=True)
    expected_duration = ma.fields.Integer(allow_none=True)
    session_type = ma.fields.String()
    cycles_completed = ma.fields.Integer()
    break_minutes = ma.fields.Integer()
    was_completed = ma.fields.Boolean()
    context = ma.fields.String(allow_none=True)
    focus_score = ma.fields.Integer(allow_none=True)
    interruption_count = ma.fields.Integer()
    focus_quality = ma.fields.Dict()
    session_notes = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    is_active = ma.fields.Function(lambda s: s.end_time is None)


class ActiveSessionSchema(ma.Schema):
    session = ma.fields.Nested(SessionSchema, allow_none=True)


class HistoryArgsSchema(PageArgsSchema):
    start_date = ma.fields.Date(load_default=None, metadata={"description": "First day, user's timezone"})
    end_date = ma.fields.Date(load_default=None, metadata={"description": "Last day, inclusive"})
    session_type = ma.fields.String(load_default=None, validate=validate.OneOf(SESSION_TYPES))
    task_id = ma.fields.UUID(load_default=None)
    was_completed = ma.fields.Boolean(load_default=None)


SessionPageSchema = page_schema(SessionSchema, "SessionPage")


class ProfileSchema(ma.Schema):
    avg_focus_duration_minutes = ma.fields.Integer(allow_none=True)
    avg_break_duration_minutes = ma.fields.Integer(allow_none=True)
    avg_interruption_count = ma.fields.Float(allow_none=True)
    avg_completion_ratio = ma.fields.Float(allow_none=True)
    avg_underestimation_pct = ma.fields.Float(
        allow_none=True,
        metadata={"description": "Mean (expected - actual) / expected * 100; negative = underestimates"},
    )
    peak_focus_hours = ma.fields.List(ma.fields.Integer(), allow_none=True)
    peak_focus_days = ma.fields.List(ma.fields.String(), allow_none=True)
    total_sessions_count = ma.fields.Integer()
    completed_sessions_count = ma.fields.Integer()
    focus_by_hour = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    performance_by_course = ma.fields.Dict()
    last_computed_at = ma.fields.String()
    sessions_analyzed_count = ma.fields.Integer()


class ProfileViewSchema(ma.Schema):
    status = ma.fields.String(metadata={"enum": ["ready", "pending", "insufficient_data"]})
    sessions_required = ma.fields.Integer()
    sessions_recorded = ma.fields.Integer()
    message = ma.fields.String(allow_none=True)
    profile = ma.fields.Nested(ProfileSchema, allow_none=True)


class InsightSchema(ma.Schema):
    type = ma.fields.String(metadata={"enum": ["positive", "neutral", "suggestion"]})
    metric = ma.fields.String()
    message = ma.fields.String()


class AveragesSchema(ma.Schema):
    sessions = ma.fields.Integer()
    duration_minutes = ma.fields.Float(allow_none=True)
    interruptions = ma.fields.Float(allow_none=True)
    focus_score = ma.fields.Float(allow_none=True)


class InsightsSchema(ma.Schema):
    session_id = ma.fields.UUID()
    insights = ma.fields.List(ma.fields.Nested(InsightSchema))
    compared_with = ma.fields.Nested(AveragesSchema)


@blp.route("/start", methods=["POST"])
@blp.arguments(StartSessionSchema)
@blp.response(201, SessionSchema)
@blp.alt_response(409, description="Another session is still active")
@handles_user_row
def start_session(body: Args) -> Row[Any]:
    """Start a focus session (one active session per user)"""
    with db_statement() as connection:
        return sessions.start_session(
            connection, current_user_id(), new_user_timezone=new_user_timezone(), **body
        )


@blp.route("/<uuid:session_id>/end", methods=["POST"])
@blp.arguments(EndSessionSchema)
@blp.response(200, SessionSchema)
@blp.alt_response(409, description="The session already ended")
@handles_user_row
def end_session(body: Args, session_id: uuid.UUID) -> Row[Any]:
    """End a session; timing is measured by the server"""
    with db_statement() as connection:
        return sessions.end_session(
            connection,
            redis_client(),
            current_user_id(),
            session_id,
            flag_ttl_seconds=settings().update_flag_ttl_seconds,
            **body,
        )


@blp.route("/active", methods=["GET"])
@blp.response(200, ActiveSessionSchema)
def active_session() -> dict[str, FocusSession | None]:
    """The caller's active session, or null"""
    return {"session": sessions.active_session(db_session(), current_user_id())}


@blp.route("/history", methods=["GET"])
@blp.arguments(HistoryArgsSchema, location="query")
@blp.response(200, SessionPageSchema)
def history(args: Args) -> Page[FocusSession]:
    """Session history, newest first, with filters and pages"""
    page, page_size = args.pop("page"), args.pop("page_size")
    return sessions.session_history(
        db_session(), current_user_id(), sessions.HistoryFilter(**args), page, page_size
    )


@blp.route("/profile", methods=["GET"])
@blp.response(200, ProfileViewSchema)
def profile() -> dict[str, Any]:
    """The caller's focus profile (cached for an hour), or why there is none yet"""
    config = settings()
    return profiles.profile_view(
        db_session(),
        redis_client(),
        current_user_id(),
        min_sessions=config.profile_min_sessions,
        cache_ttl_seconds=config.profile_cache_ttl_seconds,
    )


@blp.route("/<uuid:session_id>/insights", methods=["GET"])
@blp.response(200, InsightsSchema)
def insights(session_id: uuid.UUID) -> dict[str, Any]:
    """Feedback on one ended session against the caller's own averages"""
    return sessions.session_insights(db_session(), current_user_id(), session_id)


@blp.route("/<uuid:session_id>", methods=["DELETE"])
@blp.response(204)
def delete_session(session_id: uuid.UUID) -> None:
    """Delete a session"""
    sessions.delete_session(
        db_session(),
        redis_client(),
        current_user_id(),
        session_id,
        flag_ttl_seconds=settings().update_flag_ttl_seconds,
    )
