"""The focus-profile update job (seed 000): discovery, batches, exactly-once counting, flags.

Users come from two places: the Redis flags `focus:needs_update:{user_id}` (fast path, raised
after each session change) and PostgreSQL (source of truth): users whose sessions changed since
their profile was computed, plus the seed's staleness rule (sessions in the last 24 h and a
profile older than 24 h, or none). Losing Redis therefore delays nothing that PostgreSQL knows.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.services import cache, intelligence, job_runs, job_switches, profiles

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


@dataclass
class UpdatePlan:
    """What the task publishes: this run's pending units plus lost units of earlier runs."""

    run_id: uuid.UUID | None
    units: list[tuple[uuid.UUID, int, list[str]]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def sessions_changed(client: redis.Redis, user_id: str, version: int, flag_ttl_seconds: int) -> None:
    """After a committed change to the user's sessions (or timezone): raise their update flag and
    drop their cached briefs in one round trip. With Redis down, the bumped sessions_version still
    finds the user and the cached briefs expire."""
    cache.flag_for_update(
        client, user_id, version, flag_ttl_seconds, drop_tracked=[intelligence.brief_tracking_key(user_id)]
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
    republish_after_seconds: int = 600,
) -> UpdatePlan:
    if job_switches.skip_if_disabled(db, JOB_NAME, trigger=trigger, slot=slot, task_id=task_id):
        db.commit()
        log.info("profile update skipped: job disabled")
        return UpdatePlan(None, summary={"status": "skipped", "reason": "job disabled"})
    start = job_runs.start_run(
        db,
        JOB_NAME,
        trigger,
        slot=slot,
        task_id=task_id,
        scope="users" if user_ids is None else f"{len(user_ids)} users",
    )
    run = start.run
    if run is None:
        db.rollback()
        log.info("profile update skipped: slot %s already ran", slot)
        return UpdatePlan(None, summary={"status": "skipped", "reason": f"slot {slot} already ran"})
    logs.bind(run_id=str(run.id))
    if not start.created:
        # The same task delivered again (worker lost after commit): publish what is left.
        units = job_runs.resumed_units(db, run.id)
        db.commit()
        return UpdatePlan(run.id, units, {"status": "resumed", "run_id": str(run.id)})

    if user_ids is None:
        targets, sources = discover_users(db, client)
    else:
        targets, sources = sorted(set(user_ids)), {"requested": len(set(user_ids))}
    batches = [targets[i : i + batch_size] for i in range(0, len(targets), batch_size)]
    job_runs.add_units(db, run, batches)
    lost = job_runs.stale_pending_units(db, JOB_NAME, republish_after_seconds)
    if not batches:
        job_runs.finish_run(db, run, result={"users": 0})
    db.commit()

    log.info(
        "profile update started run=%s trigger=%s users=%d batches=%d sources=%s",
        run.id,
        trigger,
        len(targets),
        len(batches),
        sources,
    )
    if lost:
        log.warning("republishing %d profile batches whose messages were lost", len(lost))
    if not batches:
        log.info(
            "profile update finished run=%s success=0 failed=0 skipped=0 duration_ms=%s",
            run.id,
            run.duration_ms,
        )
    units = [(run.id, n, batch) for n, batch in enumerate(batches)] + lost
    summary = {
        "status": "started",
        "run_id": str(run.id),
        "users": len(targets),
        "batches": len(batches),
        "republished": len(lost),
        "sources": sources,
    }
    return UpdatePlan(run.id, units, summary)


def discover_users(db: Session, client: redis.Redis) -> tuple[list[str], dict[str, Any]]:
    from_db = {row[0] for row in db.execute(OUTDATED_USERS_SQL)}
    try:
        flagged = set(cache.flagged_user_ids(client))
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
    run_id: uuid.UUID | None = None,
    unit_no: int | None = None,
) -> dict[str, Any]:
    """Compute one batch; with a run unit, exactly once in effect however often it is delivered."""
    logs.bind(run_id=str(run_id) if run_id else None, unit=unit_no, user_id=logs.only_user(user_ids))
    if run_id is not None and not job_runs.claim_unit(db, run_id, unit_no):
        db.rollback()
        return {"status": "duplicate", "run_id": str(run_id), "unit": unit_no}
    outcome = profiles.compute_profiles(db, user_ids, min_sessions)
    finished = None
    if run_id is not None:
        finished = job_runs.count_unit(db, run_id, succeeded=outcome.computed, skipped=outcome.skipped)
    db.commit()
    cache.clear_flags_and_cache(client, outcome.versions)
    if finished is not None:
        _log_finished(finished)
    return {"status": "done", "computed": outcome.computed, "skipped": outcome.skipped}


def record_batch_failure(db: Session, run_id: uuid.UUID, unit_no: int, user_count: int, error: str) -> None:
    """A batch out of retries: count its users as failed. Their flags stay for the next run."""
    if not job_runs.claim_unit(db, run_id, unit_no, status="failed"):
        db.rollback()
        return
    finished = job_runs.count_unit(db, run_id, failed=user_count, error=error[:2000])
    db.commit()
    log.error("profile batch failed run=%s unit=%s users=%d: %s", run_id, unit_no, user_count, error)
    if finished is not None:
        _log_finished(finished)


def _log_finished(run) -> None:
    log.info(
        "profile update finished run=%s status=%s success=%d failed=%d skipped=%d duration_ms=%s",
        run.id,
        run.status,
        run.succeeded,
        run.failed,
        run.skipped,
        run.duration_ms,
    )
