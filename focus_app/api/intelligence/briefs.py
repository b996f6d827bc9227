"""Weekly briefs (seed 004) of the caller: the latest one and one by week."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import marshmallow as ma

from focus_app.api.auth import current_user_id, require_user
from focus_app.api.base import Blueprint
from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.intelligence import cache, weeks

URL_PREFIX = "/intelligence"
blp = Blueprint("intelligence", __name__, description="Weekly intelligence briefs")
blp.before_request(require_user)


class BriefInsightSchema(ma.Schema):
    type = ma.fields.String(metadata={"enum": ["positive", "neutral", "suggestion"]})
    metric = ma.fields.String()
    message = ma.fields.String()


class BriefSchema(ma.Schema):
    week_of = ma.fields.String(metadata={"description": "Monday of the ISO week, user's timezone"})
    week_stats = ma.fields.Dict(
        metadata={
            "description": "focus_minutes, sessions, completed, completion_rate, avg_focus_score, "
            "interruptions, by_day"
        }
    )
    main_story = ma.fields.String()
    insights = ma.fields.List(ma.fields.Nested(BriefInsightSchema))
    patterns = ma.fields.Dict(metadata={"description": "peak hours and days against the user's profile"})
    velocity = ma.fields.Dict(metadata={"description": "week-over-week change and the 4-week trend"})
    story_source = ma.fields.String(metadata={"enum": ["deterministic", "llm"]})
    generated_at = ma.fields.String()


@blp.route("/briefs/latest", methods=["GET"])
@blp.response(200, BriefSchema)
@blp.alt_response(404, description="No brief yet")
def latest_brief() -> dict[str, Any]:
    """The caller's most recent weekly brief"""
    return cache.brief_view(
        db_session(), redis_client(), current_user_id(), None, ttl_seconds=settings().brief_cache_ttl_seconds
    )


@blp.route("/briefs/<string:week_of>", methods=["GET"])
@blp.response(200, BriefSchema)
@blp.alt_response(404, description="No brief for that week")
def brief_for_week(week_of: str) -> dict[str, Any]:
    """The caller's brief for the week starting on `week_of` (a Monday, YYYY-MM-DD)"""
    week = weeks.parse_week_of(week_of, weeks.latest_ended_week(datetime.now(UTC)))
    return cache.brief_view(
        db_session(), redis_client(), current_user_id(), week, ttl_seconds=settings().brief_cache_ttl_seconds
    )
