"""Recovery and dead letters: the sweeper turns stuck jobs, jobs whose message was lost and deferred
jobs whose time has come back into published work; failed jobs stay as a dead-letter list until
replayed or archived."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from focus_app.models.analysis import AnalysisJob
from focus_app.services.analysis.jobs import Rules, RunMessage
from focus_app.services.jobkit.errors import NotFound

log = logging.getLogger("analysis_jobs")


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


def replay_failed(db: Session, job_id: uuid.UUID | None) -> ReplayResult:
    """Dead-letter replay: failed job(s) back to pending with a fresh attempt budget.

    Bypasses the rate limit (an operator asked); a job whose user and context already have an
    open job is skipped, since the open job will produce the same interpretation.
    """
    query = select(AnalysisJob.id).where(AnalysisJob.status == "failed")
    if job_id is None:
        query = query.where(AnalysisJob.archived_at.is_(None)).order_by(AnalysisJob.created_at)
    else:
        if db.get(AnalysisJob, job_id) is None:
            raise NotFound(f"analysis job {job_id} not found")
        query = query.where(AnalysisJob.id == job_id)
    replayed, skipped = [], {}
    for candidate in db.scalars(query).all():
        try:
            with db.begin_nested():
                row = db.execute(
                    update(AnalysisJob)
                    .where(AnalysisJob.id == candidate, AnalysisJob.status == "failed")
                    .values(
                        status="pending",
                        attempts=0,
                        outcome=None,
                        completed_at=None,
                        started_at=None,
                        archived_at=None,
                        next_attempt_at=func.now(),
                    )
                    .returning(AnalysisJob.id, AnalysisJob.priority, AnalysisJob.user_id)
                ).one_or_none()
        except IntegrityError:
            skipped[str(candidate)] = "another job for this user and context is open"
            continue
        if row is not None:
            replayed.append(RunMessage(*row))
    if job_id is not None and not replayed and str(job_id) not in skipped:
        skipped[str(job_id)] = "job is not failed"
    db.commit()
    log.info("replayed failed analysis jobs: %s skipped=%s", [str(m.job_id) for m in replayed], skipped)
    return ReplayResult(replayed, skipped)


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
