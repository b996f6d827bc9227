"""Focus profiles (seed 001 metrics), computed for a whole batch of users in one statement.

Metric definitions (documented in the README too):
- sessions analysed: the user's ended sessions; a profile needs at least `min_sessions` of them.
- avg_focus_duration_minutes / avg_break_duration_minutes: rounded means.
- avg_completion_ratio: share of analysed sessions marked completed (0..1).
- avg_underestimation_pct: mean of (expected - actual) / expected * 100 over sessions with an
  estimate. Negative means the user underestimates (sessions run longer than planned), matching
  the seed's query `avg_underestimation_pct < -10 -- underestimate by >10%`; a scheduler should
  plan `expected * (1 - pct / 100)`. Clamped to the column's +-999.99.
- peak_focus_hours / peak_focus_days: top 3 by session count, ties broken by focused minutes,
  then the earlier hour or weekday, in the user's own timezone.
- focus_by_hour: {"hour": sessions} for the hours that have sessions.
- performance_by_course: per course of the session's task: sessions, completed, minutes,
  average focus score, completion ratio.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from focus_app.models import FocusSession, UserFocusProfile
from focus_app.services.jobkit import keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    computed: int
    skipped: int  # too few sessions, or no such user


# One snapshot reads the users' versions and their sessions together, so the version stored with
# a profile is exactly the data it was computed from (READ COMMITTED: one statement, one snapshot).
COMPUTE_PROFILES_SQL = text(
    """
WITH batch AS (
    -- k: a small integer per user, so every grouping below hashes and sorts integers, not text.
    SELECT row_number() OVER () AS k, id AS user_id, timezone, sessions_version
    FROM users WHERE id = ANY(:user_ids)
),
sess AS (
    SELECT s.k, s.duration_minutes, s.expected_duration, s.break_minutes, s.interruption_count,
           s.was_completed, s.focus_score, t.course,
           date_part('hour', s.local_start)::int AS hour,
           date_part('isodow', s.local_start)::int AS isodow
    FROM (
        -- Filter on the array itself so the (user_id, start_time) index is used.
        SELECT b.k, fs.*, fs.start_time AT TIME ZONE b.timezone AS local_start
        FROM focus_sessions fs JOIN batch b ON b.user_id = fs.user_id
        WHERE fs.user_id = ANY(:user_ids) AND fs.end_time IS NOT NULL
    ) s
    LEFT JOIN (SELECT id, course FROM tasks WHERE user_id = ANY(:user_ids)) t ON t.id = s.task_id
),
totals AS (
    SELECT k,
           count(*) AS analysed,
           count(*) FILTER (WHERE was_completed) AS completed,
           round(avg(duration_minutes))::int AS avg_focus,
           round(avg(break_minutes))::int AS avg_break,
           round(avg(interruption_count), 2) AS avg_interruptions,
           round(avg(was_completed::int), 2) AS completion_ratio,
           greatest(-999.99, least(999.99, round(avg(
               (expected_duration - duration_minutes) * 100.0 / expected_duration
           ) FILTER (WHERE expected_duration > 0), 2))) AS underestimation
    FROM sess GROUP BY k HAVING count(*) >= :min_sessions
),
hours AS (
    SELECT k,
           (array_agg(hour ORDER BY n DESC, minutes DESC, hour))[1:3] AS peak_hours,
           jsonb_object_agg(hour::text, n) AS focus_by_hour
    FROM (
        SELECT k, hour, count(*) AS n, coalesce(sum(duration_minutes), 0) AS minutes
        FROM sess GROUP BY k, hour
    ) by_hour GROUP BY k
),
days AS (
    SELECT k,
           (array_agg((ARRAY['Mon','Tue','Wed','Thu','Fri','Sat','Sun'])[isodow]
                      ORDER BY n DESC, minutes DESC, isodow))[1:3] AS peak_days
    FROM (
        SELECT k, isodow, count(*) AS n, coalesce(sum(duration_minutes), 0) AS minutes
        FROM sess GROUP BY k, isodow
    ) by_day GROUP BY k
),
courses AS (
    SELECT k, jsonb_object_agg(course, jsonb_build_object(
               'sessions', n, 'completed', completed, 'total_minutes', minutes,
               'avg_focus_score', avg_score, 'completion_ratio', round(completed::numeric / n, 2)
           )) AS by_course
    FROM (
        SELECT k, course, count(*) AS n, count(*) FILTER (WHERE was_completed) AS completed,
               coalesce(sum(duration_minutes), 0) AS minutes, round(avg(focus_score), 2) AS avg_score
        FROM sess WHERE course IS NOT NULL GROUP BY k, course
    ) per_course GROUP BY k
),
upserted AS (
    INSERT INTO user_focus_profiles AS p (
        user_id, avg_focus_duration_minutes, avg_break_duration_minutes, avg_interruption_count,
        avg_completion_ratio, avg_underestimation_pct, peak_focus_hours, peak_focus_days,
        total_sessions_count, completed_sessions_count, focus_by_hour, performance_by_course,
        last_computed_at, sessions_analyzed_count, source_version, updated_at
    )
    SELECT b.user_id, t.avg_focus, t.avg_break, t.avg_interruptions, t.completion_ratio,
           t.underestimation, h.peak_hours, d.peak_days, t.analysed, t.completed,
           h.focus_by_hour, coalesce(c.by_course, '{}'::jsonb), now(), t.analysed,
           b.sessions_version, now()
    FROM totals t
    JOIN batch b USING (k)
    JOIN hours h USING (k)
    JOIN days d USING (k)
    LEFT JOIN courses c USING (k)
    ON CONFLICT (user_id) DO UPDATE SET
        avg_focus_duration_minutes = EXCLUDED.avg_focus_duration_minutes,
        avg_break_duration_minutes = EXCLUDED.avg_break_duration_minutes,
        avg_interruption_count = EXCLUDED.avg_interruption_count,
        avg_completion_ratio = EXCLUDED.avg_completion_ratio,
        avg_underestimation_pct = EXCLUDED.avg_underestimation_pct,
        peak_focus_hours = EXCLUDED.peak_focus_hours,
        peak_focus_days = EXCLUDED.peak_focus_days,
        total_sessions_count = EXCLUDED.total_sessions_count,
        completed_sessions_count = EXCLUDED.completed_sessions_count,
        focus_by_hour = EXCLUDED.focus_by_hour,
        performance_by_course = EXCLUDED.performance_by_course,
        last_computed_at = EXCLUDED.last_computed_at,
        sessions_analyzed_count = EXCLUDED.sessions_analyzed_count,
        source_version = EXCLUDED.source_version,
        updated_at = EXCLUDED.updated_at
    WHERE p.source_version <= EXCLUDED.source_version
    RETURNING p.user_id
),
dropped AS (
    -- Fewer sessions than needed now (sessions deleted): an old profile would mislead.
    DELETE FROM user_focus_profiles p USING batch b
    WHERE p.user_id = ANY(:user_ids) AND p.user_id = b.user_id
      AND b.k NOT IN (SELECT k FROM totals)
      AND p.source_version <= b.sessions_version
),
marked AS (
    UPDATE users u SET profiled_version = b.sessions_version
    FROM batch b
    WHERE u.id = ANY(:user_ids) AND u.id = b.user_id AND u.profiled_version < b.sessions_version
)
SELECT b.user_id, (u.user_id IS NOT NULL) AS computed
FROM batch b LEFT JOIN upserted u USING (user_id)
"""
)


def compute_profiles(db: Session, user_ids: list[str], min_sessions: int) -> BatchOutcome:
    """Upsert the profiles of a batch in one statement; the caller commits."""
    rows = db.execute(COMPUTE_PROFILES_SQL, {"user_ids": list(user_ids), "min_sessions": min_sessions}).all()
    requested = list(dict.fromkeys(user_ids))
    computed = sum(1 for row in rows if row.computed)
    return BatchOutcome(computed=computed, skipped=len(requested) - computed)


PROFILE_FIELDS = (
    "avg_focus_duration_minutes",
    "avg_break_duration_minutes",
    "avg_interruption_count",
    "avg_completion_ratio",
    "avg_underestimation_pct",
    "peak_focus_hours",
    "peak_focus_days",
    "total_sessions_count",
    "completed_sessions_count",
    "focus_by_hour",
    "performance_by_course",
    "last_computed_at",
    "sessions_analyzed_count",
)


def profile_view(
    db: Session, client: redis.Redis, user_id: str, *, min_sessions: int, cache_ttl_seconds: int
) -> dict[str, Any]:
    """The caller's profile: Redis cache (1 h) first, then PostgreSQL, with a clear empty state."""
    cached = _cached_profile(client, user_id)
    if cached is not None:
        return cached
    profile = db.scalars(select(UserFocusProfile).where(UserFocusProfile.user_id == user_id)).one_or_none()
    if profile is not None:
        view = {
            "status": "ready",
            "sessions_required": min_sessions,
            "sessions_recorded": profile.sessions_analyzed_count,
            "message": None,
            "profile": {field: _jsonable(getattr(profile, field)) for field in PROFILE_FIELDS},
        }
        _cache_profile(client, user_id, view, cache_ttl_seconds)
        return view
    ended = (
        db.scalar(
            select(func.count()).where(FocusSession.user_id == user_id, FocusSession.end_time.is_not(None))
        )
        or 0
    )
    if ended < min_sessions:
        status = "insufficient_data"
        message = (
            f"Complete {min_sessions - ended} more focus session(s) to see your profile "
            f"({ended} of {min_sessions})."
        )
    else:
        status = "pending"
        message = "Your profile is being computed; it appears within a few minutes."
    return {
        "status": status,
        "sessions_required": min_sessions,
        "sessions_recorded": ended,
        "message": message,
        "profile": None,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _cached_profile(client: redis.Redis, user_id: str) -> dict[str, Any] | None:
    try:
        raw = client.get(keys.profile_cache(user_id))
    except redis.RedisError as exc:
        log.warning("redis unavailable, reading profile from PostgreSQL: %s", exc)
        return None
    return json.loads(raw) if raw else None


def _cache_profile(client: redis.Redis, user_id: str, view: dict[str, Any], ttl_seconds: int) -> None:
    try:
        client.set(keys.profile_cache(user_id), json.dumps(view), ex=ttl_seconds)
    except redis.RedisError as exc:
        log.warning("redis unavailable, profile not cached: %s", exc)
