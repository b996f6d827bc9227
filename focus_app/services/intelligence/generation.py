"""Computing briefs for a batch of users: one set-based read of their weeks, one bulk upsert, and
the seed's verification of what was written.

Each user's week runs from its Monday 00:00 to the next Monday 00:00 in the user's own timezone,
so DST weeks are 167 or 169 hours long.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.intelligence import briefs
from focus_app.services.intelligence.weeks import known_zone
from focus_app.services.jobkit.llm import LLMError, LLMProvider, Throttled

NO_SUCH_USER = "no such user"
log = logging.getLogger("weekly_intelligence")


WEEK_NUMBERS_SQL = text(
    """
WITH batch AS (
    SELECT u.id AS user_id, u.timezone,
           (CAST(:week_of AS date) - 21)::timestamp AT TIME ZONE u.timezone AS trend_start,
           (CAST(:week_of AS date) + 7)::timestamp AT TIME ZONE u.timezone AS week_end
    FROM users u
    WHERE u.id = ANY(:user_ids)
      AND (:force OR NOT EXISTS (
            SELECT 1 FROM weekly_briefs w WHERE w.user_id = u.id AND w.week_of = :week_of))
),
sess AS (
    SELECT s.user_id, s.duration_minutes, s.was_completed, s.focus_score, s.interruption_count,
           s.start_time AT TIME ZONE b.timezone AS local_start
    FROM batch b JOIN focus_sessions s ON s.user_id = b.user_id
    WHERE s.end_time IS NOT NULL AND s.start_time >= b.trend_start AND s.start_time < b.week_end
),
tagged AS (
    SELECT *, (CAST(:week_of AS date) - date_trunc('week', local_start)::date) / 7 AS weeks_back
    FROM sess
),
weeks AS (
    SELECT user_id, jsonb_object_agg(weeks_back, jsonb_build_array(
               n, minutes, completed, score_sum, scored, interruptions)) AS weeks
    FROM (
        SELECT user_id, weeks_back, count(*) AS n, coalesce(sum(duration_minutes), 0) AS minutes,
               count(*) FILTER (WHERE was_completed) AS completed,
               coalesce(sum(focus_score), 0) AS score_sum, count(focus_score) AS scored,
               sum(interruption_count) AS interruptions
        FROM tagged GROUP BY user_id, weeks_back
    ) per_week GROUP BY user_id
),
days AS (
    SELECT user_id, jsonb_object_agg(isodow, jsonb_build_array(n, minutes)) AS by_day
    FROM (
        SELECT user_id, extract(isodow FROM local_start)::int AS isodow, count(*) AS n,
               coalesce(sum(duration_minutes), 0) AS minutes
        FROM tagged WHERE weeks_back = 0 GROUP BY user_id, isodow
    ) per_day GROUP BY user_id
),
hours AS (
    SELECT user_id, jsonb_object_agg(hour, jsonb_build_array(n, minutes)) AS by_hour
    FROM (
        SELECT user_id, extract(hour FROM local_start)::int AS hour, count(*) AS n,
               coalesce(sum(duration_minutes), 0) AS minutes
        FROM tagged WHERE weeks_back = 0 GROUP BY user_id, hour
    ) per_hour GROUP BY user_id
)
SELECT b.user_id, w.weeks, d.by_day, h.by_hour, p.peak_focus_hours, p.peak_focus_days
FROM batch b
LEFT JOIN weeks w USING (user_id)
LEFT JOIN days d USING (user_id)
LEFT JOIN hours h USING (user_id)
LEFT JOIN user_focus_profiles p USING (user_id)
"""
)

MARK_GENERATED_SQL = text(
    """
INSERT INTO user_preferences (user_id, last_intelligence_generated_at)
SELECT unnest(CAST(:user_ids AS text[])), now()
ON CONFLICT (user_id) DO UPDATE SET last_intelligence_generated_at = now(), updated_at = now()
"""
)

VERIFY_SQL = text(
    """
SELECT t.user_id,
       w.user_id IS NOT NULL AS brief_exists,
       coalesce(jsonb_array_length(w.insights) > 0, false) AS insights_generated,
       coalesce(w.patterns ? 'peak_hours', false) AS patterns_found,
       coalesce(w.velocity ? 'trend', false) AS velocity_calculated
FROM unnest(CAST(:user_ids AS text[])) AS t(user_id)
LEFT JOIN weekly_briefs w ON w.user_id = t.user_id AND w.week_of = :week_of
WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id)
"""
)


@dataclass(frozen=True)
class BatchOutcome:
    written: list[str]
    errors: dict[str, str]  # user id -> why no brief was written

    @property
    def missing_users(self) -> list[str]:
        """Users that do not exist (never did, or deleted their account): skipped, not failed."""
        return sorted(user_id for user_id, error in self.errors.items() if error == NO_SUCH_USER)


def compute_briefs(
    db: Session,
    user_ids: list[str],
    week_of: date,
    *,
    force_refresh: bool,
    llm: LLMProvider | None = None,
) -> BatchOutcome:
    """Briefs for a batch in one read and one upsert; the caller verifies and commits."""
    requested = list(dict.fromkeys(user_ids))
    zones: dict[str, str] = dict(
        db.execute(text("SELECT id, timezone FROM users WHERE id = ANY(:ids)"), {"ids": requested}).all()
    )
    errors = {user_id: NO_SUCH_USER for user_id in requested if user_id not in zones}
    errors.update(
        {user_id: f"unknown timezone {zone!r}" for user_id, zone in zones.items() if not known_zone(zone)}
    )
    valid = [user_id for user_id in requested if user_id not in errors]
    rows = db.execute(WEEK_NUMBERS_SQL, {"user_ids": valid, "week_of": week_of, "force": force_refresh}).all()
    values = []
    for row in rows:
        brief = briefs.build_brief(_numbers(week_of, row))
        source = "deterministic"
        if llm is not None and brief["week_stats"]["sessions"]:
            try:
                story = _llm_story(llm, row.user_id, brief)
            except Throttled as exc:
                # The story is optional and the batch must not wait out the limit: the rest of the
                # batch keeps the deterministic paragraph (counted as waits in the usage figures).
                log.warning("llm stories skipped for the rest of this batch (%d users): %s", len(rows), exc)
                llm, story = None, None
            if story:
                brief["main_story"], source = story, "llm"
        values.append({"user_id": row.user_id, "week_of": week_of, "story_source": source, **brief})
    if values:
        insert = pg_insert(WeeklyBrief).values(values)
        if force_refresh:
            columns = ("week_stats", "main_story", "insights", "patterns", "velocity", "story_source")
            insert = insert.on_conflict_do_update(
                constraint="uq_weekly_briefs_user_id_week_of",
                set_={**{c: insert.excluded[c] for c in columns}, "generated_at": func.now()},
            )
        else:
            insert = insert.on_conflict_do_nothing(constraint="uq_weekly_briefs_user_id_week_of")
        written = list(db.scalars(insert.returning(WeeklyBrief.user_id)))
        if written:
            db.execute(MARK_GENERATED_SQL, {"user_ids": written})
    else:
        written = []
    return BatchOutcome(written, errors)


def _numbers(week_of: date, row: Any) -> briefs.WeekNumbers:
    weeks = {int(back): briefs.WeekTotals(*values) for back, values in (row.weeks or {}).items()}
    return briefs.WeekNumbers(
        week_of=week_of,
        weeks=weeks,
        by_day={int(day): tuple(v) for day, v in (row.by_day or {}).items()},
        by_hour={int(hour): tuple(v) for hour, v in (row.by_hour or {}).items()},
        profile_peak_hours=row.peak_focus_hours,
        profile_peak_days=row.peak_focus_days,
    )


STORY_SYSTEM = (
    "You write a short weekly focus brief for a student. Use only the numbers given; do not invent "
    "any. One paragraph of at most 120 words, second person, plain text, no headings."
)
MAX_STORY_CHARS = 2000


def _llm_story(llm: LLMProvider, user_id: str, brief: dict[str, Any]) -> str | None:
    """The model's paragraph from the computed numbers, or None to keep the deterministic text.
    Throttled (the shared limit's turn is far away) is left to the caller."""
    numbers = {key: brief[key] for key in ("week_stats", "patterns", "velocity")}
    try:
        completion = llm.complete(STORY_SYSTEM, json.dumps(numbers), max_tokens=400)
    except Throttled:
        raise
    except LLMError as exc:
        log.warning("llm story failed for user %s, deterministic text kept: %s", user_id, exc)
        return None
    story = completion.text.strip()
    return story if 0 < len(story) <= MAX_STORY_CHARS else None


def verify(db: Session, user_ids: list[str], week_of: date) -> dict[str, list[str]]:
    """The seed's checks per user: {user_id: [failed checks]} for users that fail any.

    A user that does not exist (deleted meanwhile) fails nothing: their brief is skipped, and they
    never reach the retry queue."""
    failures: dict[str, list[str]] = {}
    for row in db.execute(VERIFY_SQL, {"user_ids": list(user_ids), "week_of": week_of}):
        failed = [
            check
            for check in ("brief_exists", "insights_generated", "patterns_found", "velocity_calculated")
            if not getattr(row, check)
        ]
        if failed:
            failures[row.user_id] = failed
    return failures


def reasons_for(outcome: BatchOutcome, failures: dict[str, list[str]]) -> dict[str, str]:
    return {
        user_id: outcome.errors.get(user_id) or "failed checks: " + ", ".join(checks)
        for user_id, checks in failures.items()
    }
