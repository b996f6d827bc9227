"""The focus-profile update job (seed 000): discovery, batches, exactly-once counting, flags.

Users come from two places: the Redis flags `focus:needs_update:{user_id}` (fast path, raised
after each session change) and PostgreSQL (source of truth): users whose sessions changed since
their profile was computed, plus the seed's staleness rule (sessions in the last 24 h and a
profile older than 24 h, or none). Losing Redis therefore delays nothing that PostgreSQL knows.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.models import JobRun
from focus_app.services.focus import flags, profiles
from focus_app.services.jobkit import fanout

JOB_NAME = "focus.update_profiles"
log = logging.getLogger("focus_profile_update")

OUTDATED_USERS_SQL = text(
    """
SELECT id FROM users WHERE sessions_version <> profiled_version
UNION
SELECT DISTINCT s.user_id
FROM focus_sessions s LEFT JOIN user_focus_profiles p ON p.user_id = s.user_id
WHERE s.end_time > now() - interval '24 hours'
  AND (p.user_id IS NULL OR p.last_computed_at < now() - interval '24 hours')
"""
)


def plan_update(
    db: Session,
    client: redis.Redis,
    *,
    trigger: str,
    task_id: str | None,
    batch_size: int,
    slot: str | None = None,
    user_ids: list[str] | None = None,
) -> fanout.Plan:
    """The run and its batches; the task publishes `focus.compute_profiles` per unit."""

    def new_run() -> fanout.NewRun:
        if user_ids is None:
            targets, sources = discover_users(db, client)
        else:
            targets, sources = sorted(set(user_ids)), {"requested": len(set(user_ids))}
        batches = [targets[i : i + batch_size] for i in range(0, len(targets), batch_size)]
        summary = {"users": len(targets), "batches": len(batches), "sources": sources}
        return fanout.NewRun(batches, {"users": len(targets)}, summary)

    scope = "users" if user_ids is None else f"{len(user_ids)} users"
    plan = fanout.plan(
        db,
        JOB_NAME,
        trigger=trigger,
        task_id=task_id,
        slot=slot,
        scope=scope,
        new_run=new_run,
    )
    if plan.started:
        summary = plan.summary
        log.info(
            "profile update started run=%s trigger=%s users=%d batches=%d sources=%s",
            plan.run_id,
            trigger,
            summary["users"],
            summary["batches"],
            summary["sources"],
        )
        if not summary["batches"]:
            log.info("profile update finished run=%s success=0 failed=0 skipped=0", plan.run_id)
    else:
        log.info("profile update %s: %s", plan.summary["status"], plan.summary.get("reason"))
    return plan


def discover_users(db: Session, client: redis.Redis) -> tuple[list[str], dict[str, Any]]:
    from_db = {row[0] for row in db.execute(OUTDATED_USERS_SQL)}
    try:
        flagged = set(flags.flagged_user_ids(client))
        redis_state = "ok"
    except redis.RedisError as exc:
        flagged = set()
        redis_state = "unavailable"
        log.warning("redis unavailable, discovering users from PostgreSQL only: %s", exc)
    sources = {"flags": len(flagged), "database": len(from_db), "redis": redis_state}
    return sorted(flagged | from_db), sources


def compute_batch(
    db: Session,
    client: redis.Redis,
    user_ids: list[str],
    *,
    min_sessions: int,
    unit: fanout.Unit | None = None,
) -> dict[str, Any]:
    """Compute one batch; with a run unit, exactly once in effect however often it is delivered."""
    logs.bind(
        run_id=str(unit.run_id) if unit else None,
        unit=unit and unit.unit_no,
        user_id=logs.only_user(user_ids),
    )
    if unit is not None and not fanout.claim(db, unit):
        return fanout.refused(db, unit)
    users = list(dict.fromkeys(user_ids))
    # Claimed before the computation reads the sessions, cleared after the commit (flags.py).
    token = flags.claim_flags(client, users)
    outcome = profiles.compute_profiles(db, users, min_sessions)
    finished = None
    if unit is not None:
        counts = fanout.Counts(succeeded=outcome.computed, skipped=outcome.skipped)
        finished = fanout.count(db, unit, counts)
    db.commit()
    flags.clear_flags_and_cache(client, users, token)
    if finished is not None:
        _log_finished(finished)
    return {"status": "done", "computed": outcome.computed, "skipped": outcome.skipped}


def record_batch_failure(db: Session, unit: fanout.Unit, user_count: int, error: str) -> None:
    """A batch out of retries: count its users as failed. Their flags stay for the next run."""
    finished = fanout.fail(db, unit, fanout.Counts(failed=user_count), error)
    log.error(
        "profile batch failed run=%s unit=%s users=%d: %s", unit.run_id, unit.unit_no, user_count, error
    )
    if finished is not None:
        _log_finished(finished)


def _log_finished(run: JobRun) -> None:
    log.info(
        "profile update finished run=%s status=%s success=%d failed=%d skipped=%d duration_ms=%s",
        run.id,
        run.status,
        run.succeeded,
        run.failed,
        run.skipped,
        run.duration_ms,
    )
