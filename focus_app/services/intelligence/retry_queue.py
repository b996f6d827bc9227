"""The retry queue of seed 004: users whose brief failed wait here with backoff, are regenerated
by `intelligence.retry_failed`, and are parked as `exhausted` with an admin alert at the limit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import redis
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models import User
from focus_app.models.intelligence import JobRetryQueue
from focus_app.services.intelligence import JOB_NAME, RETRY_JOB_NAME, cache
from focus_app.services.intelligence.generation import compute_briefs, reasons_for, verify
from focus_app.services.jobkit import fanout, runs
from focus_app.services.jobkit.llm import LLMProvider

RETRY_BATCH_LIMIT = 1000
log = logging.getLogger("weekly_intelligence")


@dataclass(frozen=True)
class RetryPolicy:
    """Seed 004: below this success rate failed users are queued; retry n waits n+1 delays."""

    below_rate: float = 0.8
    delay_seconds: int = 7200
    max_retries: int = 3

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls(
            settings.intelligence_retry_below_rate,
            settings.intelligence_retry_delay_seconds,
            settings.intelligence_max_retries,
        )


def enqueue_retries(db: Session, reasons: dict[str, str], week_of: date, policy: RetryPolicy) -> int:
    """Upsert the users into the retry queue (unique per job and user), first try after one delay.

    Only users that still exist, read FOR KEY SHARE: an account deletion in progress is waited for,
    so a deleted user is never written back into the queue."""
    if not reasons:
        return 0
    present = set(
        db.scalars(select(User.id).where(User.id.in_(list(reasons))).with_for_update(key_share=True))
    )
    if not present:
        return 0
    next_at = func.now() + timedelta(seconds=policy.delay_seconds)
    insert = pg_insert(JobRetryQueue).values(
        [
            {
                "job_name": JOB_NAME,
                "user_id": user_id,
                "week_of": week_of,
                "last_error": reason[:2000],
                "next_retry_at": next_at,
                "max_retries": policy.max_retries,
            }
            for user_id, reason in reasons.items()
            if user_id in present
        ]
    )
    insert = insert.on_conflict_do_update(
        constraint="uq_job_retry_queue_job_name_user_id",
        set_={
            "week_of": insert.excluded.week_of,
            "status": "pending",
            "retry_count": 0,
            "max_retries": insert.excluded.max_retries,
            "last_error": insert.excluded.last_error,
            "next_retry_at": insert.excluded.next_retry_at,
            "updated_at": func.now(),
        },
    )
    db.execute(insert)
    log.warning("weekly intelligence queued %d users for retry (week %s)", len(present), week_of)
    return len(present)


def process_retry_queue(
    db: Session,
    client: redis.Redis,
    *,
    trigger: str,
    task_id: str | None,
    slot: str | None,
    policy: RetryPolicy,
    llm: LLMProvider | None = None,
) -> dict[str, Any]:
    """Retry due users once each; after max_retries a user is parked and an admin alert recorded.

    Rows are locked (SKIP LOCKED) in the transaction that regenerates them, so two overlapping
    runs never retry the same user twice.
    """
    started = fanout.start(
        db, RETRY_JOB_NAME, trigger=trigger, task_id=task_id, slot=slot, scope="retry queue"
    )
    if isinstance(started, fanout.Plan):
        return started.summary
    if started.resumed:
        db.rollback()
        return {"status": "skipped", "reason": f"run {started.run.id} of this task already ran"}
    run = started.run
    due = list(
        db.scalars(
            select(JobRetryQueue)
            .where(
                JobRetryQueue.job_name == JOB_NAME,
                JobRetryQueue.status == "pending",
                JobRetryQueue.next_retry_at <= func.now(),
            )
            .order_by(JobRetryQueue.next_retry_at)
            .limit(RETRY_BATCH_LIMIT)
            .with_for_update(skip_locked=True)
        )
    )
    by_week: dict[date, list[JobRetryQueue]] = {}
    for entry in due:
        by_week.setdefault(entry.week_of, []).append(entry)
    recovered, exhausted, again, skipped, written = [], [], [], [], []
    for week_of, entries in by_week.items():
        ids = [entry.user_id for entry in entries]
        outcome = compute_briefs(db, ids, week_of, force_refresh=True, llm=llm)
        written += [(user_id, week_of) for user_id in outcome.written]
        reasons = reasons_for(outcome, verify(db, ids, week_of))
        for entry in entries:
            if entry.user_id in outcome.missing_users:
                skipped.append(entry.user_id)
                db.execute(delete(JobRetryQueue).where(JobRetryQueue.id == entry.id))
                continue
            if entry.user_id not in reasons:
                recovered.append(entry.user_id)
                db.execute(delete(JobRetryQueue).where(JobRetryQueue.id == entry.id))
                continue
            entry.retry_count += 1
            entry.last_error = reasons[entry.user_id][:2000]
            entry.updated_at = func.now()
            if entry.retry_count >= entry.max_retries:
                entry.status = "exhausted"
                exhausted.append(entry.user_id)
            else:
                entry.next_retry_at = func.now() + timedelta(
                    seconds=policy.delay_seconds * (entry.retry_count + 1)
                )
                again.append(entry.user_id)
    run.succeeded, run.failed, run.skipped = len(recovered), len(exhausted) + len(again), len(skipped)
    result = {
        "due": len(due),
        "recovered": sorted(recovered),
        "retry_later": sorted(again),
        "exhausted": sorted(exhausted),
        "skipped": sorted(skipped),
    }
    if exhausted:
        run.error = f"retries exhausted for {len(exhausted)} users: {', '.join(sorted(exhausted)[:50])}"
    runs.finish_run(db, run, status="failed" if exhausted else "success", result=result)
    db.commit()
    cache.invalidate_briefs(client, written)
    if exhausted:
        # The admin alert: a failed job_runs row (above) and this error line naming the users.
        log.error(
            "ADMIN ALERT weekly intelligence retries exhausted for %d users: %s",
            len(exhausted),
            ", ".join(sorted(exhausted)),
        )
    log.info(
        "intelligence retry run=%s due=%d recovered=%d retry_later=%d exhausted=%d",
        run.id,
        len(due),
        len(recovered),
        len(again),
        len(exhausted),
    )
    return {"status": run.status, "run_id": str(run.id), **result}
