"""The seed's health monitor of the weekly intelligence: five checks, each healthy or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from focus_app.models import JobRun
from focus_app.services.intelligence import JOB_NAME, RETRY_JOB_NAME
from focus_app.services.jobkit import keys

HEALTH_WINDOW_DAYS = 7


MAX_HOURS_SINCE_RUN = 168
MIN_SUCCESS_RATE = 0.95
MAX_MS_PER_USER = 5000
MIN_CACHE_HIT_RATE = 0.8
MAX_ERROR_RATE = 0.05


def health(db: Session, client: redis.Redis, now: datetime | None = None) -> dict[str, Any]:
    """Five checks, each healthy or not; the score is the healthy share (healthy above 0.8)."""
    now = now or datetime.now(UTC)
    last = db.scalars(
        select(JobRun).where(JobRun.job_name == JOB_NAME).order_by(JobRun.started_at.desc()).limit(1)
    ).first()
    finished = db.scalars(
        select(JobRun)
        .where(JobRun.job_name == JOB_NAME, JobRun.finished_at.is_not(None))
        .order_by(JobRun.started_at.desc())
        .limit(1)
    ).first()
    checks = {
        "last_run": _last_run_check(last, now),
        "success_rate": _success_rate_check(finished),
        "generation_time": _generation_time_check(finished),
        "cache_hit_rate": _cache_check(client, now),
        "error_rate": _error_rate_check(db, now),
    }
    score = round(sum(1 for check in checks.values() if check["healthy"]) / len(checks), 2)
    return {"healthy": score > 0.8, "score": score, "checks": checks, "timestamp": now.isoformat()}


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
