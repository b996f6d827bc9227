"""What the operator page shows: each periodic job's runs, success rate and next run, and the
retry queue. Read-only; a few grouped queries however long the history is.

Sources: `job_runs` (every run of the jobs that record one, and a `skipped` row for each beat
fire of a disabled job), `job_settings` (the switches), the Redis stamp of the last successful
finish of each periodic task (the only trace of `analysis.requeue_stale` and
`ops.archive_failed_analysis_jobs`, which write no run rows while enabled), and the beat schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from focus_app.models import JobRun
from focus_app.models.intelligence import JobRetryQueue
from focus_app.services.jobkit import switches
from focus_app.services.jobkit.pagination import Page, paginate
from focus_app.services.ops import metrics

log = logging.getLogger(__name__)

# The success rate of a job is over its last SUCCESS_RATE_WINDOW finished runs (success or failed;
# skipped and still running runs are not counted). RECENT_RUNS runs of each job are listed.
SUCCESS_RATE_WINDOW = 20
RECENT_RUNS = 10
FINISHED = ("success", "failed")


# (the entry's last beat run or None, now) -> (its next run, due now): Celery's own arithmetic.
NextRun = Callable[[datetime | None, datetime], tuple[datetime, bool]]


@dataclass(frozen=True)
class Periodic:
    """One entry of the beat schedule as data (beat_schedule.periodic_entries builds them)."""

    entry: str  # the beat entry's name
    task: str
    words: str  # the schedule in words
    interval_seconds: int | None  # None for a crontab
    next_run: NextRun


def periodic_jobs(
    db: Session,
    client: redis.Redis,
    jobs: list[Periodic],
    timezone: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every entry of the beat schedule with its switch, last run, success rate and next run."""
    now = now or datetime.now(UTC)
    names = [job.task for job in jobs]
    warnings = []
    try:
        stamps = metrics.periodic_successes(client)
    except redis.RedisError as exc:
        log.warning("redis unavailable, periodic success stamps left out: %s", exc)
        stamps = {}
        warnings.append("Redis unavailable: last successes of jobs without run rows are unknown")
    recent = _recent_runs(db, names)
    rates = _success_rates(db, names)
    marks = _marks(db, names)
    enabled = {row["job_name"]: row["enabled"] for row in switches.list_settings(db, set(names))}
    items = []
    for job in jobs:
        runs = recent.get(job.task, [])
        last_success, last_beat_run = marks.get(job.task, (None, None))
        stamp = stamps.get(job.task)
        stamped = datetime.fromtimestamp(stamp, UTC) if stamp is not None else None
        last_success = _latest(last_success, stamped)
        # Beat's interval clock runs from its last fire: the last beat run recorded, else (jobs that
        # write no run rows) the last successful finish.
        fired = last_beat_run or stamped
        upcoming, due = job.next_run(fired, now)
        succeeded, counted = rates.get(job.task, (0, 0))
        items.append(
            {
                "name": job.entry,
                "task": job.task,
                "schedule": job.words,
                "interval_seconds": job.interval_seconds,
                "enabled": enabled.get(job.task, True),
                "last_run": runs[0] if runs else None,
                "last_success_at": last_success,
                "success_rate": round(succeeded / counted, 4) if counted else None,
                "runs_counted": counted,
                "runs_succeeded": succeeded,
                "next_run_at": upcoming,
                "due": due,
                "recent_runs": runs,
            }
        )
    return {
        "timezone": timezone,
        "generated_at": now,
        "success_rate_window": SUCCESS_RATE_WINDOW,
        "warnings": warnings,
        "jobs": items,
    }


def _recent_runs(db: Session, names: list[str]) -> dict[str, list[JobRun]]:
    """The last RECENT_RUNS runs of each job, newest first (one windowed query)."""
    ranked = (
        select(
            JobRun,
            func.row_number()
            .over(partition_by=JobRun.job_name, order_by=(JobRun.started_at.desc(), JobRun.id))
            .label("rank"),
        )
        .where(JobRun.job_name.in_(names))
        .subquery()
    )
    run = aliased(JobRun, ranked)
    found: dict[str, list[JobRun]] = {}
    for row in db.scalars(
        select(run).where(ranked.c.rank <= RECENT_RUNS).order_by(run.job_name, ranked.c.rank)
    ):
        found.setdefault(row.job_name, []).append(row)
    return found


def _success_rates(db: Session, names: list[str]) -> dict[str, tuple[int, int]]:
    """(succeeded, counted) over each job's last SUCCESS_RATE_WINDOW finished runs."""
    ranked = (
        select(
            JobRun.job_name,
            JobRun.status,
            func.row_number()
            .over(partition_by=JobRun.job_name, order_by=(JobRun.started_at.desc(), JobRun.id))
            .label("rank"),
        )
        .where(JobRun.job_name.in_(names), JobRun.status.in_(FINISHED))
        .subquery()
    )
    rows = db.execute(
        select(
            ranked.c.job_name,
            func.count().filter(ranked.c.status == "success"),
            func.count(),
        )
        .where(ranked.c.rank <= SUCCESS_RATE_WINDOW)
        .group_by(ranked.c.job_name)
    )
    return {name: (succeeded, counted) for name, succeeded, counted in rows}


def _marks(db: Session, names: list[str]) -> dict[str, tuple[datetime | None, datetime | None]]:
    """(last successful finish, start of the last beat-triggered run) of each job."""
    rows = db.execute(
        select(
            JobRun.job_name,
            func.max(JobRun.finished_at).filter(JobRun.status == "success"),
            func.max(JobRun.started_at).filter(JobRun.trigger == "beat"),
        )
        .where(JobRun.job_name.in_(names))
        .group_by(JobRun.job_name)
    )
    return {name: (success, beat) for name, success, beat in rows}


def _latest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def retry_queue(
    db: Session,
    *,
    job: str | None,
    status: str | None,
    user_id: str | None,
    page: int,
    page_size: int,
) -> Page[JobRetryQueue]:
    """Retry-queue entries: pending ones by when they are due, then the parked (exhausted) ones."""
    query = select(JobRetryQueue)
    for column, value in (
        (JobRetryQueue.job_name, job),
        (JobRetryQueue.status, status),
        (JobRetryQueue.user_id, user_id),
    ):
        if value is not None:
            query = query.where(column == value)
    order = (JobRetryQueue.status != "pending", JobRetryQueue.next_retry_at, JobRetryQueue.id)
    return paginate(db, query, order, page, page_size)
