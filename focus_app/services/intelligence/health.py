"""The seed's health monitor of the weekly intelligence: its five checks, each healthy or not,
plus the deadline: do users have their brief a few hours after it came due in their timezone?"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from focus_app.models import JobRun, User
from focus_app.services.intelligence import JOB_NAME, RETRY_JOB_NAME, weeks
from focus_app.services.intelligence.job import ENABLED_SQL
from focus_app.services.jobkit import keys

HEALTH_WINDOW_DAYS = 7


MAX_HOURS_SINCE_RUN = 168
MIN_SUCCESS_RATE = 0.95
MAX_MS_PER_USER = 5000
MIN_CACHE_HIT_RATE = 0.8
MAX_ERROR_RATE = 0.05
DEADLINE_HOURS = 4
MIN_ON_TIME_SHARE = 0.999
MAX_LISTED_USERS = 20

# Users whose latest brief came due (in their own zone) more than DEADLINE_HOURS ago, and how many
# of them have it. One pass over users with a primary-key probe of weekly_briefs each.
DEADLINE_SQL = text(
    f"""
SELECT count(*) AS due, count(w.user_id) AS briefed,
       (array_agg(u.id ORDER BY u.id) FILTER (WHERE w.user_id IS NULL))[1:{MAX_LISTED_USERS}] AS missing
FROM users u
JOIN unnest(CAST(:zones AS text[]), CAST(:weeks AS date[]), CAST(:due_ats AS timestamptz[]))
     AS d(zone, week_of, due_at) ON d.zone = u.timezone
LEFT JOIN user_preferences p ON p.user_id = u.id
LEFT JOIN weekly_briefs w ON w.user_id = u.id AND w.week_of = d.week_of
WHERE {ENABLED_SQL} AND u.created_at < d.due_at
"""
)


def health(db: Session, client: redis.Redis, now: datetime | None = None) -> dict[str, Any]:
    """Six checks, each healthy or not; the score is the healthy share. Healthy above 0.8 (the
    seed's rule) and only while the deadline holds: users without their brief outweigh the rest."""
    now = now or datetime.now(UTC)
    last = db.scalars(
        select(JobRun).where(JobRun.job_name == JOB_NAME).order_by(JobRun.started_at.desc()).limit(1)
    ).first()
    # A run an operator cancelled says nothing about how the job does (the deadline check still
    # counts the users it left without a brief).
    finished = db.scalars(
        select(JobRun)
        .where(JobRun.job_name == JOB_NAME, JobRun.finished_at.is_not(None), JobRun.status != "cancelled")
        .order_by(JobRun.started_at.desc())
        .limit(1)
    ).first()
    checks = {
        "last_run": _last_run_check(last, now),
        "success_rate": _success_rate_check(finished),
        "generation_time": _generation_time_check(finished),
        "cache_hit_rate": _cache_check(client, now),
        "error_rate": _error_rate_check(db, now),
        "deadline": deadline_check(db, now),
    }
    score = round(sum(1 for check in checks.values() if check["healthy"]) / len(checks), 2)
    healthy = score > 0.8 and checks["deadline"]["healthy"]
    return {"healthy": healthy, "score": score, "checks": checks, "timestamp": now.isoformat()}


def deadline_check(db: Session, now: datetime) -> dict[str, Any]:
    """The share of users due for more than 4 hours who have their brief (healthy at 99.9 %).

    Due: enabled now, signed up before the brief came due, and the brief's week is the latest one
    that came due at least 4 hours ago at Monday 02:00 in the user's current timezone."""
    cutoff = now - timedelta(hours=DEADLINE_HOURS)
    zones = list(db.scalars(select(User.timezone).distinct()))
    weeks_due = [weeks.due_week(cutoff, weeks.zone_of(zone)) for zone in zones]
    due_ats = [weeks.due_at(week, weeks.zone_of(zone)) for zone, week in zip(zones, weeks_due, strict=True)]
    row = db.execute(DEADLINE_SQL, {"zones": zones, "weeks": weeks_due, "due_ats": due_ats}).one()
    check: dict[str, Any] = {
        "due_users": row.due,
        "briefed_users": row.briefed,
        "missing_users": row.missing or [],
        "threshold": MIN_ON_TIME_SHARE,
        "hours_after_due": DEADLINE_HOURS,
    }
    if not row.due:
        return {"healthy": True, "on_time_share": None, **check, "message": "no user due yet"}
    share = row.briefed / row.due
    return {"healthy": share >= MIN_ON_TIME_SHARE, "on_time_share": round(share, 6), **check}


def _last_run_check(run: JobRun | None, now: datetime) -> dict[str, Any]:
    if run is None:
        return {"healthy": False, "message": "no runs found"}
    hours = round((now - run.started_at).total_seconds() / 3600, 2)
    return {
        "healthy": hours < MAX_HOURS_SINCE_RUN,
        "hours_since_last_run": hours,
        "last_run_status": run.status,
    }


def _success_rate_check(run: JobRun | None) -> dict[str, Any]:
    rate = (run.result or {}).get("success_rate") if run else None
    if rate is None:
        return {"healthy": False, "message": "no finished run"}
    return {"healthy": rate >= MIN_SUCCESS_RATE, "success_rate": rate, "threshold": MIN_SUCCESS_RATE}


def _generation_time_check(run: JobRun | None) -> dict[str, Any]:
    processed = (run.result or {}).get("users_processed") if run else None
    if run is None or not processed or run.duration_ms is None:
        return {"healthy": run is not None, "ms_per_user": None, "message": "no users in the last run"}
    per_user = round(run.duration_ms / processed, 2)
    return {
        "healthy": per_user < MAX_MS_PER_USER,
        "ms_per_user": per_user,
        "duration_ms": run.duration_ms,
        "threshold_ms": MAX_MS_PER_USER,
    }


def _cache_check(client: redis.Redis, now: datetime) -> dict[str, Any]:
    days = [now.date() - timedelta(days=n) for n in range(HEALTH_WINDOW_DAYS)]
    try:
        pipe = client.pipeline(transaction=False)
        for day in days:
            pipe.hmget(keys.brief_stats(day), "hits", "misses")
        counts = pipe.execute()
    except redis.RedisError as exc:
        return {"healthy": False, "message": f"redis unavailable: {exc}"}
    hits = sum(int(h or 0) for h, _ in counts)
    misses = sum(int(m or 0) for _, m in counts)
    lookups = hits + misses
    if lookups == 0:
        return {"healthy": True, "hit_rate": None, "hits": 0, "misses": 0, "message": "no lookups in 7 days"}
    rate = round(hits / lookups, 4)
    return {"healthy": rate >= MIN_CACHE_HIT_RATE, "hit_rate": rate, "hits": hits, "misses": misses}


def _error_rate_check(db: Session, now: datetime) -> dict[str, Any]:
    """Share of users that failed in the weekly and retry runs of the last 7 days."""
    row = db.execute(
        select(func.coalesce(func.sum(JobRun.succeeded), 0), func.coalesce(func.sum(JobRun.failed), 0)).where(
            JobRun.job_name.in_((JOB_NAME, RETRY_JOB_NAME)),
            JobRun.started_at >= now - timedelta(days=HEALTH_WINDOW_DAYS),
            JobRun.finished_at.is_not(None),
        )
    ).one()
    succeeded, failed = int(row[0]), int(row[1])
    if succeeded + failed == 0:
        return {"healthy": True, "error_rate": None, "message": "no users processed in 7 days"}
    rate = round(failed / (succeeded + failed), 4)
    return {"healthy": rate < MAX_ERROR_RATE, "error_rate": rate, "threshold": MAX_ERROR_RATE}
