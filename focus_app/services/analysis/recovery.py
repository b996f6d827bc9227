"""Recovery and dead letters: the sweeper turns stuck jobs, jobs whose message was lost and deferred
jobs whose time has come back into published work; failed jobs stay as a dead-letter list until
replayed (one, or a class of them at once) or archived; an operator may cancel a job still waiting
to run."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from focus_app.models import JobRun
from focus_app.models.analysis import OPEN_STATUSES, AnalysisJob
from focus_app.services.analysis.jobs import Rules, RunMessage
from focus_app.services.jobkit import fanout, runs
from focus_app.services.jobkit.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger("analysis_jobs")

REPLAY_JOB_NAME = "analysis.replay"
REPLAY_PAGE_SIZE = 500  # jobs per transaction (and per publishing round) of a bulk replay
REPLAY_SAMPLE_SIZE = 20
# Publishes `analysis.run` for replayed jobs after their commit; a task id or None (broker down).
Publish = Callable[[list[RunMessage]], list[str | None]]


@dataclass
class SweepResult:
    requeued: list[uuid.UUID]
    failed: list[uuid.UUID]
    republish: list[RunMessage]  # to publish after the commit
    resumed: list[uuid.UUID]  # deferred jobs whose time came (among republish)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requeued_stuck": [str(i) for i in self.requeued],
            "failed_stuck": [str(i) for i in self.failed],
            "resumed_deferred": [str(i) for i in self.resumed],
            "republished": len(self.republish),
        }


def sweep(db: Session, rules: Rules) -> SweepResult:
    """Stuck processing jobs back to pending (or failed when out of attempts); deferred jobs whose
    time has come (a new day of the user's budget) and pending jobs whose message is overdue (lost
    with a Redis restart or flush) listed for publishing."""
    stuck_before = func.now() - timedelta(seconds=rules.stuck_after_seconds)
    stuck = AnalysisJob.status == "processing", AnalysisJob.started_at < stuck_before
    timeout = f"timed out: processing for more than {rules.stuck_after_seconds}s"
    failed = db.scalars(
        update(AnalysisJob)
        .where(*stuck, AnalysisJob.attempts >= rules.max_attempts)
        .values(status="failed", error=timeout, completed_at=func.now())
        .returning(AnalysisJob.id)
    ).all()
    requeued = db.scalars(
        update(AnalysisJob)
        .where(*stuck, AnalysisJob.attempts < rules.max_attempts)
        .values(status="pending", error=timeout, next_attempt_at=func.now() - timedelta(days=1))
        .returning(AnalysisJob.id)
    ).all()
    resumed = db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.status == "deferred", AnalysisJob.next_attempt_at <= func.now())
        .values(status="pending", next_attempt_at=func.now(), waiting_for=None)
        .returning(AnalysisJob.id, AnalysisJob.priority, AnalysisJob.user_id)
    ).all()
    overdue = db.execute(
        update(AnalysisJob)
        .where(
            AnalysisJob.status == "pending",
            AnalysisJob.next_attempt_at < func.now() - timedelta(seconds=rules.republish_after_seconds),
        )
        .values(next_attempt_at=func.now())
        .returning(AnalysisJob.id, AnalysisJob.priority, AnalysisJob.user_id)
    ).all()
    db.commit()
    result = SweepResult(
        list(requeued),
        list(failed),
        [RunMessage(*row) for row in [*resumed, *overdue]],
        [row.id for row in resumed],
    )
    if requeued or failed:
        log.warning(
            "cleaned up stuck analysis jobs: requeued=%s failed=%s",
            [str(i) for i in requeued],
            [str(i) for i in failed],
        )
    if resumed:
        log.info("deferred analysis jobs due again: %s", [str(row.id) for row in resumed])
    if overdue:
        log.warning("republishing analysis jobs whose message was lost: %s", [str(r.id) for r in overdue])
    return result


@dataclass
class ReplayResult:
    replayed: list[RunMessage]  # to publish after the commit
    skipped: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": [str(m.job_id) for m in self.replayed], "skipped": self.skipped}


def replay_failed(db: Session, job_id: uuid.UUID) -> ReplayResult:
    """Dead-letter replay of one job: back to pending with a fresh attempt budget (committed)."""
    if db.get(AnalysisJob, job_id) is None:
        raise NotFound(f"analysis job {job_id} not found")
    result = _replay(db, [job_id])
    if not result.replayed and str(job_id) not in result.skipped:
        result.skipped[str(job_id)] = "job is not failed"
    db.commit()
    replayed = [str(message.job_id) for message in result.replayed]
    log.info("replayed failed analysis jobs: %s skipped=%s", replayed, result.skipped)
    return result


# failed -> pending with a fresh attempt budget, for the newest failed job of each user and context
# among the candidates that has no open job (the open one will produce the same interpretation).
REPLAY_SQL = text(
    """
UPDATE analysis_jobs j
SET status = 'pending', attempts = 0, outcome = NULL, completed_at = NULL, started_at = NULL,
    archived_at = NULL, next_attempt_at = now()
FROM (
    SELECT DISTINCT ON (c.user_id, c.context_type) c.id
    FROM analysis_jobs c
    WHERE c.id = ANY(CAST(:ids AS uuid[])) AND c.status = 'failed'
      AND NOT EXISTS (
          SELECT 1 FROM analysis_jobs o
          WHERE o.user_id = c.user_id AND o.context_type = c.context_type
            AND o.status = ANY(CAST(:open AS text[])))
    ORDER BY c.user_id, c.context_type, c.created_at DESC
) AS pick
WHERE j.id = pick.id AND j.status = 'failed'
RETURNING j.id, j.priority, j.user_id
"""
)
OPEN_JOB_REASON = "another job for this user and context is open"


def _replay(db: Session, candidates: list[uuid.UUID]) -> ReplayResult:
    """Replay the candidates that are failed in one statement (rate limit bypassed: an operator
    asked); not committed. A job opened meanwhile by a trigger breaks the one-open-job index: the
    statement is tried again and then sees it."""
    for attempt in range(3):
        try:
            with db.begin_nested():
                rows = db.execute(REPLAY_SQL, {"ids": candidates, "open": list(OPEN_STATUSES)}).all()
            break
        except IntegrityError:
            if attempt == 2:
                raise
    taken = {row.id for row in rows}
    left = db.scalars(
        select(AnalysisJob.id).where(
            AnalysisJob.id.in_([c for c in candidates if c not in taken]), AnalysisJob.status == "failed"
        )
    ).all()
    return ReplayResult([RunMessage(*row) for row in rows], {str(job_id): OPEN_JOB_REASON for job_id in left})


# When a job failed: its completion (a job failed before completion times were kept: its creation).
FAILED_AT = func.coalesce(AnalysisJob.completed_at, AnalysisJob.created_at)


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters (failed, unarchived jobs) a bulk replay takes; each field narrows it."""

    error: str | None = None  # a piece of the error, any case
    context_type: str | None = None
    user_id: str | None = None
    failed_since: datetime | None = None  # inclusive
    failed_until: datetime | None = None  # exclusive

    def __post_init__(self) -> None:
        if self.failed_since and self.failed_until and self.failed_since >= self.failed_until:
            raise InvalidInput(
                "failed_until must be after failed_since", {"failed_until": ["must be after failed_since"]}
            )

    def given(self) -> dict[str, str]:
        """The fields set, as JSON (kept with the run, shown on /ops)."""
        values = {
            "error": self.error,
            "context_type": self.context_type,
            "user_id": self.user_id,
            "failed_since": self.failed_since.isoformat() if self.failed_since else None,
            "failed_until": self.failed_until.isoformat() if self.failed_until else None,
        }
        return {name: value for name, value in values.items() if value is not None}

    def conditions(self, cutoff: datetime | None = None) -> list[ColumnElement[bool]]:
        found = [AnalysisJob.status == "failed", AnalysisJob.archived_at.is_(None)]
        if cutoff is not None:
            found.append(FAILED_AT <= cutoff)
        if self.error:
            found.append(AnalysisJob.error.icontains(self.error, autoescape=True))
        if self.context_type:
            found.append(AnalysisJob.context_type == self.context_type)
        if self.user_id:
            found.append(AnalysisJob.user_id == self.user_id)
        if self.failed_since:
            found.append(FAILED_AT >= self.failed_since)
        if self.failed_until:
            found.append(FAILED_AT < self.failed_until)
        return found


@dataclass
class BulkReplay:
    """What a bulk replay did, or (dry run) would do."""

    dry_run: bool
    matched: int
    sample: list[AnalysisJob] = field(default_factory=list)
    run_id: uuid.UUID | None = None
    status: str | None = None  # the run's: success, or cancelled by an operator midway
    replayed: int = 0
    skipped: int = 0
    published: int = 0
    pages: int = 0

    def as_dict(self) -> dict[str, Any]:
        found = {name: getattr(self, name) for name in ("dry_run", "matched", "status", "replayed")}
        found.update(skipped=self.skipped, published=self.published, pages=self.pages)
        found["run_id"] = str(self.run_id) if self.run_id else None
        found["sample"] = [str(job.id) for job in self.sample]
        return found


def replay_matching(
    db: Session,
    criteria: ReplayFilter,
    *,
    dry_run: bool,
    trigger: str,
    task_id: str | None,
    publish: Publish,
    page_size: int = REPLAY_PAGE_SIZE,
) -> BulkReplay:
    """Every dead letter the filter matches, replayed exactly once, a page per transaction, each
    page published after its commit. Dry run: the count and a sample, nothing changed.

    The replay is a `job_runs` row (job `analysis.replay`): its counts grow page by page, an
    operator may cancel it between pages, and a redelivered task goes on with the same run. Only
    jobs that failed before it started are taken, so a replayed job that fails again meanwhile is
    not replayed a second time.
    """
    if dry_run:
        matched = db.scalar(select(func.count()).where(*criteria.conditions())) or 0
        sample = db.scalars(
            select(AnalysisJob)
            .where(*criteria.conditions())
            .order_by(FAILED_AT.desc(), AnalysisJob.id)
            .limit(REPLAY_SAMPLE_SIZE)
        ).all()
        db.commit()
        return BulkReplay(dry_run=True, matched=matched, sample=list(sample))

    scope = "dead letters" + "".join(f", {name} {value}" for name, value in criteria.given().items())
    started = fanout.start(
        db, REPLAY_JOB_NAME, trigger=trigger, task_id=task_id, slot=None, scope=scope[:200]
    )
    assert not isinstance(started, fanout.Plan), "no slot and no beat trigger: a replay always starts"
    run = started.run
    if not started.resumed:
        cutoff = db.execute(select(func.now())).scalar_one()
        matched = db.scalar(select(func.count()).where(*criteria.conditions(cutoff))) or 0
        run.units_total = math.ceil(matched / page_size)
        run.result = {"filter": criteria.given(), "cutoff": cutoff.isoformat(), "matched": matched}
    db.commit()
    params = run.result or {}
    cutoff = datetime.fromisoformat(params["cutoff"])
    summary = BulkReplay(dry_run=False, matched=params["matched"], run_id=run.id)
    summary.published = _replay_pages(db, run.id, criteria.conditions(cutoff), publish, page_size)
    run = db.get_one(JobRun, run.id, populate_existing=True)
    if run.status == "running":
        result = {**(run.result or {}), "replayed": run.succeeded, "skipped": run.skipped}
        runs.finish_run(db, run, status="success", result=result)
        db.commit()
    summary.status, summary.replayed, summary.skipped = run.status, run.succeeded, run.skipped
    summary.pages = run.units_done
    log.info(
        "bulk replay run=%s status=%s filter=%s matched=%d replayed=%d skipped=%d pages=%d",
        run.id,
        run.status,
        criteria.given(),
        summary.matched,
        summary.replayed,
        summary.skipped,
        summary.pages,
    )
    return summary


def _replay_pages(
    db: Session, run_id: uuid.UUID, conditions: list[ColumnElement[bool]], publish: Publish, page_size: int
) -> int:
    """Page after page (keyset on the failure time, so skipped jobs are passed once) until none is
    left or the run was cancelled; how many messages were published."""
    published = 0
    after: tuple[datetime, uuid.UUID] | None = None
    while db.scalar(select(JobRun.status).where(JobRun.id == run_id)) == "running":
        query = select(AnalysisJob.id, FAILED_AT.label("failed_at")).where(*conditions)
        if after is not None:
            query = query.where(tuple_(FAILED_AT, AnalysisJob.id) > tuple_(*after))
        page = db.execute(query.order_by(FAILED_AT, AnalysisJob.id).limit(page_size)).all()
        if not page:
            db.commit()
            break
        after = (page[-1].failed_at, page[-1].id)
        result = _replay(db, [row.id for row in page])
        runs.count_unit(db, run_id, succeeded=len(result.replayed), skipped=len(result.skipped))
        db.commit()
        published += sum(1 for task_id in publish(result.replayed) if task_id is not None)
    return published


def cancel_job(db: Session, job_id: uuid.UUID) -> AnalysisJob:
    """A pending job ends `cancelled` (committed): a message delivered later finds it not pending
    and does nothing, the sweeper republishes only pending jobs, and its user and context may
    open a new job. NotFound; Conflict for a job in any other status."""
    cancelled = db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id, AnalysisJob.status == "pending")
        .values(status="cancelled", error=runs.CANCELLED_ERROR, completed_at=func.now())
        .returning(AnalysisJob.id)
    ).one_or_none()
    if cancelled is None:
        status = db.scalar(select(AnalysisJob.status).where(AnalysisJob.id == job_id))
        db.rollback()
        if status is None:
            raise NotFound(f"analysis job {job_id} not found")
        raise Conflict(f"analysis job {job_id} is {status}: only a pending job can be cancelled")
    db.commit()
    log.warning("analysis job=%s cancelled by an operator", job_id)
    return db.get_one(AnalysisJob, job_id)


def archive_failed(db: Session, older_than_days: int) -> int:
    """Failed jobs parked longer than the window leave the dead-letter list (kept, archived)."""
    count = len(
        db.scalars(
            update(AnalysisJob)
            .where(
                AnalysisJob.status == "failed",
                AnalysisJob.archived_at.is_(None),
                AnalysisJob.completed_at < func.now() - timedelta(days=older_than_days),
            )
            .values(archived_at=func.now())
            .returning(AnalysisJob.id)
        ).all()
    )
    db.commit()
    log.info("archived %d failed analysis jobs older than %d days", count, older_than_days)
    return count
