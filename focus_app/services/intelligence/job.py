"""The weekly run (seed 004): plan a week's batches as job-run units, generate each batch exactly
once, verify the whole run when its last batch is counted and queue its failed users for retry.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import redis
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from focus_app.models import JobRun, JobRunUnit
from focus_app.services.intelligence import JOB_NAME, cache
from focus_app.services.intelligence.generation import compute_briefs, reasons_for, verify
from focus_app.services.intelligence.retry_queue import RetryPolicy, enqueue_retries
from focus_app.services.intelligence.weeks import week_slot
from focus_app.services.jobkit import fanout, runs
from focus_app.services.jobkit.llm import LLMProvider

MAX_LISTED_USERS = 100
log = logging.getLogger("weekly_intelligence")


ENABLED_USERS_SQL = text(
    """
SELECT u.id
FROM users u LEFT JOIN user_preferences p ON p.user_id = u.id
WHERE coalesce(p.intelligence_generation_enabled, true)
  AND coalesce(p.intelligence_generation_frequency, 'weekly') = 'weekly'
  AND (:force OR NOT EXISTS (
        SELECT 1 FROM weekly_briefs w WHERE w.user_id = u.id AND w.week_of = :week_of))
ORDER BY u.id
"""
)


def plan_weekly(
    db: Session,
    *,
    trigger: str,
    task_id: str | None,
    week_of: date,
    batch_size: int,
    user_ids: list[str] | None = None,
    force_refresh: bool = False,
) -> fanout.Plan:
    """Record the run and its batches in PostgreSQL; the caller publishes them after this commit.

    A whole-population run without force_refresh takes the week's slot, so beat firing twice, a
    second beat process or a restarted beat, and a manual trigger for the same week run it once.
    """

    def new_run() -> fanout.NewRun:
        if user_ids is None:
            params = {"force": force_refresh, "week_of": week_of}
            targets = [row[0] for row in db.execute(ENABLED_USERS_SQL, params)]
        else:
            targets = sorted(set(user_ids))
        batches = [targets[i : i + batch_size] for i in range(0, len(targets), batch_size)]
        result = {"week_of": week_of.isoformat(), "force_refresh": force_refresh, "users": len(targets)}
        return fanout.NewRun(
            batches,
            result,
            {**result, "batches": len(batches)},
            result_if_empty={**result, "success_rate": 1.0},
        )

    plan = fanout.plan(
        db,
        JOB_NAME,
        trigger=trigger,
        task_id=task_id,
        slot=week_slot(week_of) if user_ids is None and not force_refresh else None,
        scope=f"week {week_of.isoformat()}" + ("" if user_ids is None else f", {len(user_ids)} users"),
        new_run=new_run,
    )
    if plan.started:
        log.info(
            "weekly intelligence started run=%s week=%s trigger=%s users=%d batches=%d",
            plan.run_id,
            week_of,
            trigger,
            plan.summary["users"],
            plan.summary["batches"],
        )
    elif plan.run_id is None:
        log.info("weekly intelligence for week %s skipped: %s", week_of, plan.summary["reason"])
    return plan


def work_through(
    db: Session,
    client: redis.Redis,
    plan: fanout.Plan,
    *,
    llm: LLMProvider | None,
    policy: RetryPolicy,
    progress: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """The planning task works through its own run's units after publishing them, reporting
    progress; a unit its generate task took first is a duplicate here and costs nothing."""
    assert plan.run_id is not None
    progress(run_progress(db, plan.run_id))
    for unit in plan.units:
        try:
            generate_batch(db, client, unit.payload, llm=llm, unit=unit, policy=policy)
        except SQLAlchemyError as exc:
            # Its published message (retried with backoff) still covers this batch.
            db.rollback()
            log.warning("batch %s/%s left to its generate task: %s", unit.run_id, unit.unit_no, exc)
        progress(run_progress(db, plan.run_id))
    return run_summary(db, plan.run_id)


def lost_units(db: Session, older_than_seconds: int) -> list[fanout.Unit]:
    """Weekly batches still pending long after publishing: their message was probably lost."""
    return [fanout.Unit(*row) for row in runs.stale_pending_units(db, JOB_NAME, older_than_seconds)]


def run_progress(db: Session, run_id: uuid.UUID) -> dict[str, Any]:
    run = db.get_one(JobRun, run_id, populate_existing=True)
    return {
        "run_id": str(run_id),
        "week_of": (run.result or {}).get("week_of"),
        "done": run.succeeded + run.failed + run.skipped,
        "total": (run.result or {}).get("users", 0),
        "status": run.status,
    }


def run_summary(db: Session, run_id: uuid.UUID) -> dict[str, Any]:
    run = db.get_one(JobRun, run_id, populate_existing=True)
    return {
        "run_id": str(run_id),
        "status": run.status,
        **(run.result or {}),
        "users_successful": run.succeeded,
        "users_failed": run.failed,
        "duration_ms": run.duration_ms,
    }


def generate_batch(
    db: Session,
    client: redis.Redis,
    user_ids: list[str],
    *,
    week_of: date | None = None,
    force_refresh: bool = False,
    llm: LLMProvider | None = None,
    unit: fanout.Unit | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """One batch; with a run unit, exactly once in effect however often it is delivered.

    The unit's week and force flag come from its run. The delivery that completes the run's last
    unit verifies the whole run and fills the retry queue.
    """
    if unit is not None:
        if not fanout.claim(db, unit):
            return {"status": "duplicate", "run_id": str(unit.run_id), "unit": unit.unit_no}
        params = db.get_one(JobRun, unit.run_id).result or {}
        week_of = date.fromisoformat(params["week_of"])
        force_refresh = bool(params.get("force_refresh"))
    assert week_of is not None, "a batch outside a run names its week"
    outcome = compute_briefs(db, user_ids, week_of, force_refresh=force_refresh, llm=llm)
    reasons = reasons_for(outcome, verify(db, user_ids, week_of))
    skipped = outcome.missing_users
    finished = None
    if unit is not None:
        ok = len(set(user_ids)) - len(reasons) - len(skipped)
        counts = fanout.Counts(succeeded=ok, failed=len(reasons), skipped=len(skipped))
        finished = fanout.count(
            db,
            unit,
            counts,
            unit_error=json.dumps(reasons) if reasons else None,
            finish=_finalizer(policy or RetryPolicy()),
        )
    db.commit()
    cache.invalidate_briefs(client, [(user_id, week_of) for user_id in outcome.written])
    if finished is not None:
        _log_finished(finished)
    return {
        "status": "done",
        "week_of": week_of.isoformat(),
        "written": len(outcome.written),
        "failed": sorted(reasons),
        "skipped": skipped,
    }


def record_batch_failure(
    db: Session, unit: fanout.Unit, user_ids: list[str], error: str, policy: RetryPolicy
) -> None:
    """A batch out of retries: its users count as failed and go through verification like any."""
    fanout.fail(
        db,
        unit,
        fanout.Counts(failed=len(set(user_ids))),
        error,
        unit_error=json.dumps({user_id: error[:500] for user_id in user_ids}),
        finish=_finalizer(policy),
    )
    log.error(
        "intelligence batch failed run=%s unit=%s users=%d: %s",
        unit.run_id,
        unit.unit_no,
        len(user_ids),
        error,
    )


def _finalizer(policy: RetryPolicy) -> fanout.Finish:
    return lambda db, run: _finalize_run(db, run, policy)


def _finalize_run(db: Session, run: JobRun, policy: RetryPolicy) -> None:
    """Verify the whole run (seed: verify_generation) and queue failed users below the threshold."""
    params = run.result or {}
    week_of = date.fromisoformat(params["week_of"])
    units = db.execute(select(JobRunUnit.payload, JobRunUnit.error).where(JobRunUnit.run_id == run.id)).all()
    users = sorted({user_id for unit in units for user_id in unit.payload})
    recorded: dict[str, str] = {}
    for unit in units:
        recorded.update(json.loads(unit.error) if unit.error else {})
    failures = verify(db, users, week_of)
    failed = sorted(failures)
    rate = round((len(users) - len(failed)) / len(users), 4) if users else 1.0
    queued = 0
    if failed and rate < policy.below_rate:
        reasons = {u: recorded.get(u) or "failed checks: " + ", ".join(failures[u]) for u in failed}
        queued = enqueue_retries(db, reasons, week_of, policy)
    result = {
        **params,
        "users_processed": len(users),
        "users_successful": len(users) - len(failed),
        "users_failed": len(failed),
        "success_rate": rate,
        "failed_users": failed[:MAX_LISTED_USERS],
        "queued_for_retry": queued,
    }
    status = "failed" if rate < policy.below_rate else "success"
    if failed:
        run.error = f"{len(failed)} of {len(users)} users failed verification: {', '.join(failed[:20])}"
    runs.finish_run(db, run, status=status, result=result)
    run.result = result


def _log_finished(run: JobRun) -> None:
    result = run.result or {}
    log.info(
        "weekly intelligence finished run=%s status=%s processed=%s successful=%s failed=%s "
        "success_rate=%s duration_ms=%s",
        run.id,
        run.status,
        result.get("users_processed"),
        result.get("users_successful"),
        result.get("users_failed"),
        result.get("success_rate"),
        run.duration_ms,
    )
