"""The caller's account: settings, dashboard data, export and deletion (seed 001 "Data Retention")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from flask import Response, current_app
from marshmallow import validate
from sqlalchemy.orm import Session

from focus_app.api.analysis.schemas import AnalysisJobSchema
from focus_app.api.auth import current_user_id, require_user
from focus_app.api.base import Args, Blueprint
from focus_app.api.intelligence.briefs import BriefSchema
from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.account import dashboard as dashboard_data
from focus_app.services.account import deletion
from focus_app.services.account import export as exports
from focus_app.services.account import settings as account
from focus_app.services.intelligence import cache as brief_cache
from focus_app.services.jobkit.errors import NotFound

URL_PREFIX = "/me"
blp = Blueprint("me", __name__, description="The caller's settings, data export and account deletion")
blp.before_request(require_user)

EXPORT_FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


class WeeklyBriefPrefsSchema(ma.Schema):
    enabled = ma.fields.Boolean(metadata={"description": "generate a brief every week"})
    frequency = ma.fields.String(validate=validate.OneOf(account.BRIEF_FREQUENCIES))
    notification = ma.fields.Boolean(metadata={"description": "notify when a brief is ready"})
    last_generated_at = ma.fields.DateTime(allow_none=True, dump_only=True)


class AccountSchema(ma.Schema):
    user_id = ma.fields.String()
    timezone = ma.fields.String(metadata={"example": "Europe/Berlin"})
    created_at = ma.fields.DateTime()
    weekly_brief = ma.fields.Nested(WeeklyBriefPrefsSchema)


class AccountPatchSchema(ma.Schema):
    timezone = ma.fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "IANA name; peak hours and days are computed in it"},
    )
    weekly_brief = ma.fields.Nested(WeeklyBriefPrefsSchema)

    @ma.validates_schema
    def not_empty(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("give timezone and/or weekly_brief", "_schema")


class ExportArgsSchema(ma.Schema):
    format = ma.fields.String(load_default="json", validate=validate.OneOf(tuple(EXPORT_FORMATS)))


class DashboardArgsSchema(ma.Schema):
    days = ma.fields.Integer(load_default=28, validate=validate.Range(min=1, max=366))


class DayFocusSchema(ma.Schema):
    date = ma.fields.String()
    minutes = ma.fields.Integer()
    sessions = ma.fields.Integer()
    completed = ma.fields.Integer()


class DashboardSchema(ma.Schema):
    days = ma.fields.List(ma.fields.Nested(DayFocusSchema), metadata={"description": "oldest first"})
    last_analysis = ma.fields.Nested(AnalysisJobSchema, allow_none=True)
    latest_brief = ma.fields.Nested(BriefSchema, allow_none=True)


@blp.route("", methods=["GET"])
@blp.response(200, AccountSchema)
def get_account() -> dict[str, Any]:
    """The caller's timezone and weekly-brief preferences"""
    return account.account_settings(db_session(), current_user_id())


@blp.route("", methods=["PATCH"])
@blp.arguments(AccountPatchSchema)
@blp.response(200, AccountSchema)
def patch_account(body: Args) -> dict[str, Any]:
    """Change the timezone (the profile is recomputed in it) and/or weekly-brief preferences"""
    return account.update_settings(
        db_session(),
        redis_client(),
        current_user_id(),
        flag_ttl_seconds=settings().update_flag_ttl_seconds,
        **body,
    )


@blp.route("", methods=["DELETE"])
@blp.response(204)
def delete_account() -> None:
    """Delete the caller's account and every row and cached key of it"""
    deletion.delete_account(db_session(), redis_client(), current_user_id())


@blp.route("/export", methods=["GET"])
@blp.arguments(ExportArgsSchema, location="query")
@blp.response(200, description="A JSON document or a CSV of the sessions, streamed as a download")
def export(args: Args) -> Response:
    """Download everything stored about the caller (json) or their sessions (csv)"""
    fmt = args["format"]
    produce = exports.export_json if fmt == "json" else exports.export_csv
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return Response(
        _streamed(produce, current_app.extensions["db"].session.session_factory(), current_user_id()),
        mimetype=EXPORT_FORMATS[fmt].split(";")[0],
        content_type=EXPORT_FORMATS[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="focus-export-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


def _streamed(
    produce: Callable[[Session, str], Iterator[str]], session: Session, user_id: str
) -> Iterator[str]:
    """The body is produced after the view returns and its request is torn down, so it reads
    through a session of its own, closed when the client has it all or goes away."""
    try:
        yield from produce(session, user_id)
    finally:
        session.close()


@blp.route("/dashboard", methods=["GET"])
@blp.arguments(DashboardArgsSchema, location="query")
@blp.response(200, DashboardSchema)
def dashboard(args: Args) -> dict[str, Any]:
    """Focus minutes per local day (last `days`, default 28), the last analysis job and the latest
    brief (null when there is none: a new user's page loads without a 404)"""
    db = db_session()
    user_id = current_user_id()
    try:
        brief = brief_cache.brief_view(
            db, redis_client(), user_id, None, ttl_seconds=settings().brief_cache_ttl_seconds
        )
    except NotFound:
        brief = None
    return {
        "days": dashboard_data.daily_focus(db, user_id, args["days"]),
        "last_analysis": dashboard_data.last_analysis(db, user_id),
        "latest_brief": brief,
    }
