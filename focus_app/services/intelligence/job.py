"""The weekly run (seed 004), ticked every few minutes: a tick plans the briefs that came due since
the last one, each at Monday 02:00 in its user's own timezone, as job-run units (one batch of users
of one week each); every batch is generated exactly once, the run is verified when its last batch
is counted and its failed users are queued for retry.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import redis
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from focus_app.models import JobRun, JobRunUnit, User
from focus_app.services.intelligence import JOB_NAME, cache, weeks
from focus_app.services.intelligence.generation import compute_briefs, reasons_for, verify
from focus_app.services.intelligence.retry_queue import RetryPolicy, enqueue_retries
from focus_app.services.jobkit import fanout, runs
from focus_app.services.jobkit.llm import LLMProvider

MAX_LISTED_USERS = 100
TICK_SCOPE = "briefs due"
log = logging.getLogger("weekly_intelligence")

# Who gets briefs (seed 004's preferences); a user without a preferences row does.
ENABLED_SQL = (
    "coalesce(p.intelligence_generation_enabled, true) "
    "AND coalesce(p.intelligence_generation_frequency, 'weekly') = 'weekly'"
)

# One range of ix_users_brief_due_at: a tick that finds nobody due costs one index probe. The rows
# are locked, so an overlapping tick waits here and then finds them no longer due.
DUE_USERS_SQL = text(
    f"""
SELECT u.id, u.timezone, u.created_at, u.brief_week, {ENABLED_SQL} AS enabled
FROM users u LEFT JOIN user_preferences p ON p.user_id = u.id
WHERE u.brief_due_at <= :now OR u.brief_due_at IS NULL
ORDER BY u.id
FOR UPDATE OF u
"""
)

RESCHEDULE_SQL = text(
    """
UPDATE users u SET brief_week = s.brief_week, brief_due_at = s.due_at
FROM unnest(CAST(:ids AS text[]), CAST(:weeks AS date[]), CAST(:due_ats AS timestamptz[]))
     AS s(id, brief_week, due_at)
WHERE u.id = s.id
"""
)

# A cancelled tick's users whose batch never ran: their week is owed again, worked out by the next
# tick (NULL), and `brief_week` only ever moves back here (a later tick may have planned further).
RELEASE_SQL = text(
    """
UPDATE users u SET brief_week = LEAST(u.brief_week, s.brief_week), brief_due_at = NULL
FROM unnest(CAST(:ids AS text[]), CAST(:weeks AS date[])) AS s(id, brief_week)
WHERE u.id = s.id
"""
)

AUDIENCE_SQL = text(
    f"""
SELECT u.id, u.timezone
FROM users u LEFT JOIN user_preferences p ON p.user_id = u.id
WHERE {ENABLED_SQL}
  AND (CAST(:week_of AS date) IS NULL OR :force OR NOT EXISTS (
        SELECT 1 FROM weekly_briefs w WHERE w.user_id = u.id AND w.week_of = :week_of))
ORDER BY u.id
"""
)


def plan_weekly(
    db: Session,
    *,
    now: datetime,
    trigger: str,
    task_id: str | None,
    batch_size: int,
    catch_up_weeks: int,
    week_of: date | None = None,
    user_ids: list[str] | None = None,
    force_refresh: bool = False,
) -> fanout.Plan:
    """Record the run and its batches in PostgreSQL; the caller publishes them after this commit.

    Without a week, users or force_refresh this is a tick: every brief that came due by `now`
    (users are claimed by moving their schedule in the same transaction, so two beats or
    overlapping ticks plan each brief once, and a tick that finds nothing due leaves no run).
    Otherwise the week (default: each user's latest due week) for the users asked for, or for
    every enabled user whose week has come due in their timezone; such a whole-population run for
    a week without force_refresh takes the week's slot and runs once.
    """
    tick = week_of is None and user_ids is None and not force_refresh

    def new_run() -> fanout.NewRun:
        if tick:
            briefs = _claim_due_briefs(db, now, catch_up_weeks)
        else:
            briefs = _requested_briefs(db, now, week_of, user_ids, force_refresh)
        by_week: dict[date, list[str]] = {}
        for user_id, week in briefs:
            by_week.setdefault(week, []).append(user_id)
        payloads = [
            [users[i : i + batch_size], week.isoformat()]
            for week, users in sorted(by_week.items())
            for i in range(0, len(users), batch_size)
        ]
        latest = max(by_week) if by_week else week_of
        result = {
            "week_of": latest.isoformat() if latest else None,
            "weeks": {week.isoformat(): len(users) for week, users in sorted(by_week.items())},
            "force_refresh": force_refresh,
            "users": len(briefs),
        }
        return fanout.NewRun(
            payloads,
            result,
            {**result, "batches": len(payloads)},
            result_if_empty={**result, "success_rate": 1.0},
            keep_if_empty=not tick,
        )

    plan = fanout.plan(
        db,
        JOB_NAME,
        trigger=trigger,
        task_id=task_id,
        slot=_slot(week_of, user_ids, force_refresh),
        scope=_scope(tick, week_of, user_ids),
        new_run=new_run,
        release=release_units,
    )
    if plan.started:
        log.info(
            "weekly intelligence started run=%s weeks=%s trigger=%s users=%d batches=%d",
            plan.run_id,
            plan.summary["weeks"],
            trigger,
            plan.summary["users"],
            plan.summary["batches"],
        )
    elif plan.run_id is None and plan.summary["status"] != "idle":
        log.info("weekly intelligence skipped: %s", plan.summary["reason"])
    return plan


def request_weekly(
    db: Session, *, task_id: str, week_of: date, user_ids: list[str] | None, force_refresh: bool
) -> dict[str, Any]:
    """An operator's run for a week, recorded (committed) before its `intelligence.weekly` is
    published: if the broker is down, `intelligence.retry_failed` publishes it later. Its kwargs."""
    kwargs: dict[str, Any] = {"trigger": "api", "week_of": week_of.isoformat()}
    kwargs["force_refresh"] = force_refresh
    if user_ids is not None:
        kwargs["user_ids"] = user_ids
    runs.request_run(
        db,
        JOB_NAME,
        "api",
        task_id=task_id,
        kwargs=kwargs,
        slot=_slot(week_of, user_ids, force_refresh),
        scope=_scope(False, week_of, user_ids),
    )
    db.commit()
    return kwargs


def _slot(week_of: date | None, user_ids: list[str] | None, force_refresh: bool) -> str | None:
    """A whole-population run for a week without force_refresh takes the week's slot: it runs once."""
    whole_week = user_ids is None and week_of is not None and not force_refresh
    return weeks.week_slot(week_of) if whole_week and week_of else None


def _scope(tick: bool, week_of: date | None, user_ids: list[str] | None) -> str:
    if tick:
        return TICK_SCOPE
    week = f"week {week_of.isoformat()}" if week_of else "latest due week"
    return week if user_ids is None else f"{week}, {len(user_ids)} users"


def _claim_due_briefs(db: Session, now: datetime, catch_up_weeks: int) -> list[tuple[str, date]]:
    """The (user, week) briefs due by `now`; every due user's schedule moves on in this transaction."""
    rows = db.execute(DUE_USERS_SQL, {"now": now}).all()
    briefs: list[tuple[str, date]] = []
    ids, brief_weeks, due_ats = [], [], []
    for row in rows:
        planned = weeks.schedule(
            now,
            weeks.zone_of(row.timezone),
            created_at=row.created_at,
            brief_week=row.brief_week,
            enabled=row.enabled,
            catch_up_weeks=catch_up_weeks,
        )
        briefs += [(row.id, week) for week in planned.weeks]
        ids.append(row.id)
        brief_weeks.append(planned.brief_week)
        due_ats.append(planned.next_due_at)
    if ids:
        db.execute(RESCHEDULE_SQL, {"ids": ids, "weeks": brief_weeks, "due_ats": due_ats})
    return briefs


def _requested_briefs(
    db: Session, now: datetime, week_of: date | None, user_ids: list[str] | None, force: bool
) -> list[tuple[str, date]]:
    """Briefs an operator asked for. Without users, only weeks that have come due in each user's
    timezone (a week run at Monday 02:00 UTC leaves Los Angeles, still in its Sunday, to its tick)."""
    due_week = functools.cache(lambda zone: weeks.due_week(now, weeks.zone_of(zone)))
    if user_ids is None:
        rows = db.execute(AUDIENCE_SQL, {"week_of": week_of, "force": force}).all()
        if week_of is None:
            return [(row.id, due_week(row.timezone)) for row in rows]
        return [(row.id, week_of) for row in rows if week_of <= due_week(row.timezone)]
    zones = {
        row.id: row.timezone
        for row in db.execute(select(User.id, User.timezone).where(User.id.in_(user_ids)))
    }
    return [(user_id, week_of or due_week(zones.get(user_id))) for user_id in sorted(set(user_ids))]


def release_units(db: Session, units: list[fanout.Unit]) -> None:
    """Cancelled batches of a tick give their users back to the schedule, so the next tick plans
    the briefs that were never written (a deliberate run moved no schedule: nothing to give)."""
    ticks = {
        row.id: row.result or {}
        for row in db.execute(
            select(JobRun.id, JobRun.result).where(
                JobRun.id.in_({unit.run_id for unit in units}), JobRun.scope == TICK_SCOPE
            )
        )
    }
    owed: dict[str, date] = {}
    for unit in units:
        if unit.run_id not in ticks:
            continue
        users, week = _batch(unit.payload)
        week = week or date.fromisoformat(ticks[unit.run_id]["week_of"])
        for user_id in users:
            owed[user_id] = min(owed.get(user_id, week), week)
    if owed:
        db.execute(RELEASE_SQL, {"ids": list(owed), "weeks": [week - weeks.WEEK for week in owed.values()]})
        log.info("weekly intelligence: %d users of cancelled batches are due again", len(owed))


def unit_args(payload: Any) -> list[Any]:
    """`intelligence.generate`'s arguments for a unit: its users and week (a unit planned before
    weeks were per unit holds only the users; its week is the run's)."""
    users, week = _batch(payload)
    return [users] if week is None else [users, week.isoformat()]


def _batch(payload: Any) -> tuple[list[str], date | None]:
    if payload and isinstance(payload[0], list):
        return payload[0], date.fromisoformat(payload[1])
    return payload, None


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
        users, week = _batch(unit.payload)
        try:
            generate_batch(db, client, users, week_of=week, llm=llm, unit=unit, policy=policy)
        except SQLAlchemyError as exc:
            # Its published message (retried with backoff) still covers this batch.
            db.rollback()
            log.warning("batch %s/%s left to its generate task: %s", unit.run_id, unit.unit_no, exc)
        progress(run_progress(db, plan.run_id))
    return run_summary(db, plan.run_id)


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

    A unit's force flag comes from its run (and its week too, for a unit planned before weeks were
    per unit). Only briefs this batch wrote count as successes: a user whose brief another run
    wrote meanwhile is skipped, so no brief is ever counted twice. The delivery that completes the
    run's last unit verifies the whole run and fills the retry queue.
    """
    if unit is not None:
        if not fanout.claim(db, unit):
            return fanout.refused(db, unit)
        params = db.get_one(JobRun, unit.run_id).result or {}
        week_of = week_of or date.fromisoformat(params["week_of"])
        force_refresh = bool(params.get("force_refresh"))
    assert week_of is not None, "a batch outside a run names its week"
    outcome = compute_briefs(db, user_ids, week_of, force_refresh=force_refresh, llm=llm)
    reasons = reasons_for(outcome, verify(db, user_ids, week_of))
    skipped = outcome.missing_users
    succeeded = set(outcome.written) - set(reasons)
    already = set(user_ids) - succeeded - set(reasons) - set(skipped)
    finished = None
    if unit is not None:
        counts = fanout.Counts(
            succeeded=len(succeeded), failed=len(reasons), skipped=len(skipped) + len(already)
        )
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
        "already_briefed": len(already),
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
    """Verify the whole run (seed: verify_generation), week by week, and queue failed users below
    the threshold."""
    params = run.result or {}
    units = db.execute(select(JobRunUnit.payload, JobRunUnit.error).where(JobRunUnit.run_id == run.id)).all()
    by_week: dict[date, set[str]] = {}
    recorded: dict[str, str] = {}
    for unit in units:
        users, week = _batch(unit.payload)
        by_week.setdefault(week or date.fromisoformat(params["week_of"]), set()).update(users)
        recorded.update(json.loads(unit.error) if unit.error else {})
    processed = sum(len(users) for users in by_week.values())
    failures = {week: verify(db, sorted(users), week) for week, users in by_week.items()}
    failed = sorted({user_id for week_failures in failures.values() for user_id in week_failures})
    failed_count = sum(len(week_failures) for week_failures in failures.values())
    rate = round((processed - failed_count) / processed, 4) if processed else 1.0
    queued = 0
    if failed and rate < policy.below_rate:
        for week, week_failures in sorted(failures.items()):
            reasons = {
                u: recorded.get(u) or "failed checks: " + ", ".join(c) for u, c in week_failures.items()
            }
            queued += enqueue_retries(db, reasons, week, policy)
    result = {
        **params,
        "users_processed": processed,
        "users_successful": processed - failed_count,
        "users_failed": failed_count,
        "success_rate": rate,
        "failed_users": failed[:MAX_LISTED_USERS],
        "queued_for_retry": queued,
    }
    status = "failed" if rate < policy.below_rate else "success"
    if failed:
        run.error = f"{failed_count} of {processed} users failed verification: {', '.join(failed[:20])}"
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
