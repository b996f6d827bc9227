"""Weekly intelligence job (seed 004): batches, verification, retry queue, cache, health.

A run covers one ISO week (`week_of` = its Monday). Each user's week runs from that Monday 00:00
to the next Monday 00:00 in the user's own timezone, so DST weeks are 167 or 169 hours long.
Briefs for a batch of users come from one set-based statement plus one bulk upsert; a batch is a
job-run unit claimed exactly once in the same transaction as its briefs.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.models import JobRun, JobRunUnit, User
from focus_app.models.intelligence import JobRetryQueue, WeeklyBrief
from focus_app.services import briefs, job_runs, job_switches
from focus_app.services.cache import DROP_TRACKED_LUA, _Script
from focus_app.services.errors import InvalidInput, NotFound
from focus_app.services.llm import LLMError, LLMProvider

JOB_NAME = "intelligence.weekly"
RETRY_JOB_NAME = "intelligence.retry_failed"
BEAT_HOUR = 2  # Monday 02:00 in the configured timezone
RETRY_BATCH_LIMIT = 1000
MAX_LISTED_USERS = 100
NO_SUCH_USER = "no such user"
log = logging.getLogger("weekly_intelligence")


# ---------------------------------------------------------------- weeks and the beat slot


def week_just_ended(now: datetime, timezone: str) -> date:
    """Monday of the last ISO week that has fully ended at `now` in `timezone`."""
    local = now.astimezone(ZoneInfo(timezone)).date()
    return local - timedelta(days=local.weekday() + 7)


def week_slot(week_of: date) -> str:
    year, week, _ = week_of.isocalendar()
    return f"{year}-W{week:02d}"


def beat_window_open(now: datetime, timezone: str, grace_seconds: int) -> bool:
    """True from Monday 02:00 until the grace period ends: a late beat still runs, once."""
    local = now.astimezone(ZoneInfo(timezone))
    monday = local.date() - timedelta(days=local.weekday())
    opens = datetime.combine(monday, time(BEAT_HOUR), tzinfo=local.tzinfo)
    return opens <= local < opens + timedelta(seconds=grace_seconds)


def week_of_problem(week_of: date, latest: date) -> str | None:
    """Why `week_of` cannot have a brief (None when it can)."""
    if week_of.isoweekday() != 1:
        return "must be a Monday (the first day of an ISO week)"
    if week_of > latest:
        return f"must be a week that has ended (latest {latest.isoformat()})"
    return None


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


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


# ---------------------------------------------------------------- planning a run


@dataclass
class WeeklyPlan:
    run_id: uuid.UUID | None
    units: list[tuple[uuid.UUID, int, list[str]]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


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
) -> WeeklyPlan:
    """Record the run and its batches in PostgreSQL; the caller publishes them after this commit.

    A whole-population run without force_refresh takes the week's slot, so beat firing twice, a
    second beat process or a restarted beat, and a manual trigger for the same week run it once.
    """
    slot = week_slot(week_of) if user_ids is None and not force_refresh else None
    if job_switches.skip_if_disabled(db, JOB_NAME, trigger=trigger, slot=slot, task_id=task_id):
        db.commit()
        return WeeklyPlan(None, summary={"status": "skipped", "reason": "job disabled"})
    start = job_runs.start_run(
        db,
        JOB_NAME,
        trigger,
        slot=slot,
        task_id=task_id,
        scope=f"week {week_of.isoformat()}" + ("" if user_ids is None else f", {len(user_ids)} users"),
    )
    run = start.run
    if run is None:
        db.rollback()
        log.info("weekly intelligence skipped: week %s already ran", week_of)
        return WeeklyPlan(None, summary={"status": "skipped", "reason": f"week {week_of} already ran"})
    logs.bind(run_id=str(run.id))
    if not start.created:
        units = job_runs.resumed_units(db, run.id)
        db.commit()
        return WeeklyPlan(run.id, units, {"status": "resumed", "run_id": str(run.id), **(run.result or {})})

    if user_ids is None:
        params = {"force": force_refresh, "week_of": week_of}
        targets = [row[0] for row in db.execute(ENABLED_USERS_SQL, params)]
    else:
        targets = sorted(set(user_ids))
    batches = [targets[i : i + batch_size] for i in range(0, len(targets), batch_size)]
    job_runs.add_units(db, run, batches)
    run.result = {"week_of": week_of.isoformat(), "force_refresh": force_refresh, "users": len(targets)}
    if not batches:
        job_runs.finish_run(db, run, result={**run.result, "success_rate": 1.0})
    db.commit()
    log.info(
        "weekly intelligence started run=%s week=%s trigger=%s users=%d batches=%d",
        run.id,
        week_of,
        trigger,
        len(targets),
        len(batches),
    )
    summary = {"status": "started", "run_id": str(run.id), **run.result, "batches": len(batches)}
    return WeeklyPlan(run.id, [(run.id, n, batch) for n, batch in enumerate(batches)], summary)


def lost_units(db: Session, older_than_seconds: int) -> list[tuple[uuid.UUID, int, list[str]]]:
    """Weekly batches still pending long after publishing: their message was probably lost."""
    return job_runs.stale_pending_units(db, JOB_NAME, older_than_seconds)


def run_progress(db: Session, run_id: uuid.UUID) -> dict[str, Any]:
    run = db.get(JobRun, run_id, populate_existing=True)
    return {
        "run_id": str(run_id),
        "week_of": (run.result or {}).get("week_of"),
        "done": run.succeeded + run.failed + run.skipped,
        "total": (run.result or {}).get("users", 0),
        "status": run.status,
    }


def run_summary(db: Session, run_id: uuid.UUID) -> dict[str, Any]:
    run = db.get(JobRun, run_id, populate_existing=True)
    return {
        "run_id": str(run_id),
        "status": run.status,
        **(run.result or {}),
        "users_successful": run.succeeded,
        "users_failed": run.failed,
        "duration_ms": run.duration_ms,
    }


# ---------------------------------------------------------------- computing briefs


WEEK_NUMBERS_SQL = text(
    """
WITH batch AS (
    SELECT u.id AS user_id, u.timezone,
           (CAST(:week_of AS date) - 21)::timestamp AT TIME ZONE u.timezone AS trend_start,
           (CAST(:week_of AS date) + 7)::timestamp AT TIME ZONE u.timezone AS week_end
    FROM users u
    WHERE u.id = ANY(:user_ids)
      AND (:force OR NOT EXISTS (
            SELECT 1 FROM weekly_briefs w WHERE w.user_id = u.id AND w.week_of = :week_of))
),
sess AS (
    SELECT s.user_id, s.duration_minutes, s.was_completed, s.focus_score, s.interruption_count,
           s.start_time AT TIME ZONE b.timezone AS local_start
    FROM batch b JOIN focus_sessions s ON s.user_id = b.user_id
    WHERE s.end_time IS NOT NULL AND s.start_time >= b.trend_start AND s.start_time < b.week_end
),
tagged AS (
    SELECT *, (CAST(:week_of AS date) - date_trunc('week', local_start)::date) / 7 AS weeks_back
    FROM sess
),
weeks AS (
    SELECT user_id, jsonb_object_agg(weeks_back, jsonb_build_array(
               n, minutes, completed, score_sum, scored, interruptions)) AS weeks
    FROM (
        SELECT user_id, weeks_back, count(*) AS n, coalesce(sum(duration_minutes), 0) AS minutes,
               count(*) FILTER (WHERE was_completed) AS completed,
               coalesce(sum(focus_score), 0) AS score_sum, count(focus_score) AS scored,
               sum(interruption_count) AS interruptions
        FROM tagged GROUP BY user_id, weeks_back
    ) per_week GROUP BY user_id
),
days AS (
    SELECT user_id, jsonb_object_agg(isodow, jsonb_build_array(n, minutes)) AS by_day
    FROM (
        SELECT user_id, extract(isodow FROM local_start)::int AS isodow, count(*) AS n,
               coalesce(sum(duration_minutes), 0) AS minutes
        FROM tagged WHERE weeks_back = 0 GROUP BY user_id, isodow
    ) per_day GROUP BY user_id
),
hours AS (
    SELECT user_id, jsonb_object_agg(hour, jsonb_build_array(n, minutes)) AS by_hour
    FROM (
        SELECT user_id, extract(hour FROM local_start)::int AS hour, count(*) AS n,
               coalesce(sum(duration_minutes), 0) AS minutes
        FROM tagged WHERE weeks_back = 0 GROUP BY user_id, hour
    ) per_hour GROUP BY user_id
)
SELECT b.user_id, w.weeks, d.by_day, h.by_hour, p.peak_focus_hours, p.peak_focus_days
FROM batch b
LEFT JOIN weeks w USING (user_id)
LEFT JOIN days d USING (user_id)
LEFT JOIN hours h USING (user_id)
LEFT JOIN user_focus_profiles p USING (user_id)
"""
)

MARK_GENERATED_SQL = text(
    """
INSERT INTO user_preferences (user_id, last_intelligence_generated_at)
SELECT unnest(CAST(:user_ids AS text[])), now()
ON CONFLICT (user_id) DO UPDATE SET last_intelligence_generated_at = now(), updated_at = now()
"""
)

VERIFY_SQL = text(
    """
SELECT t.user_id,
       w.user_id IS NOT NULL AS brief_exists,
       coalesce(jsonb_array_length(w.insights) > 0, false) AS insights_generated,
       coalesce(w.patterns ? 'peak_hours', false) AS patterns_found,
       coalesce(w.velocity ? 'trend', false) AS velocity_calculated
FROM unnest(CAST(:user_ids AS text[])) AS t(user_id)
LEFT JOIN weekly_briefs w ON w.user_id = t.user_id AND w.week_of = :week_of
WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id)
"""
)


@dataclass(frozen=True)
class BatchOutcome:
    written: list[str]
    errors: dict[str, str]  # user id -> why no brief was written

    @property
    def missing_users(self) -> list[str]:
        """Users that do not exist (never did, or deleted their account): skipped, not failed."""
        return sorted(user_id for user_id, error in self.errors.items() if error == NO_SUCH_USER)


def compute_briefs(
    db: Session,
    user_ids: list[str],
    week_of: date,
    *,
    force_refresh: bool,
    llm: LLMProvider | None = None,
) -> BatchOutcome:
    """Briefs for a batch in one read and one upsert; the caller verifies and commits."""
    requested = list(dict.fromkeys(user_ids))
    zones = dict(
        db.execute(text("SELECT id, timezone FROM users WHERE id = ANY(:ids)"), {"ids": requested}).all()
    )
    errors = {user_id: NO_SUCH_USER for user_id in requested if user_id not in zones}
    errors.update(
        {user_id: f"unknown timezone {zone!r}" for user_id, zone in zones.items() if not _known_zone(zone)}
    )
    valid = [user_id for user_id in requested if user_id not in errors]
    rows = db.execute(WEEK_NUMBERS_SQL, {"user_ids": valid, "week_of": week_of, "force": force_refresh}).all()
    values = []
    for row in rows:
        brief = briefs.build_brief(_numbers(week_of, row))
        source = "deterministic"
        if llm is not None and brief["week_stats"]["sessions"]:
            story = _llm_story(llm, row.user_id, brief)
            if story:
                brief["main_story"], source = story, "llm"
        values.append({"user_id": row.user_id, "week_of": week_of, "story_source": source, **brief})
    if values:
        insert = pg_insert(WeeklyBrief).values(values)
        if force_refresh:
            columns = ("week_stats", "main_story", "insights", "patterns", "velocity", "story_source")
            insert = insert.on_conflict_do_update(
                constraint="uq_weekly_briefs_user_id_week_of",
                set_={**{c: insert.excluded[c] for c in columns}, "generated_at": func.now()},
            )
        else:
            insert = insert.on_conflict_do_nothing(constraint="uq_weekly_briefs_user_id_week_of")
        written = list(db.scalars(insert.returning(WeeklyBrief.user_id)))
        if written:
            db.execute(MARK_GENERATED_SQL, {"user_ids": written})
    else:
        written = []
    return BatchOutcome(written, errors)


def _numbers(week_of: date, row: Any) -> briefs.WeekNumbers:
    weeks = {int(back): briefs.WeekTotals(*values) for back, values in (row.weeks or {}).items()}
    return briefs.WeekNumbers(
        week_of=week_of,
        weeks=weeks,
        by_day={int(day): tuple(v) for day, v in (row.by_day or {}).items()},
        by_hour={int(hour): tuple(v) for hour, v in (row.by_hour or {}).items()},
        profile_peak_hours=row.peak_focus_hours,
        profile_peak_days=row.peak_focus_days,
    )


STORY_SYSTEM = (
    "You write a short weekly focus brief for a student. Use only the numbers given; do not invent "
    "any. One paragraph of at most 120 words, second person, plain text, no headings."
)
MAX_STORY_CHARS = 2000


def _llm_story(llm: LLMProvider, user_id: str, brief: dict[str, Any]) -> str | None:
    """The model's paragraph from the computed numbers, or None to keep the deterministic text."""
    numbers = {key: brief[key] for key in ("week_stats", "patterns", "velocity")}
    try:
        completion = llm.complete(STORY_SYSTEM, json.dumps(numbers), max_tokens=400)
    except LLMError as exc:
        log.warning("llm story failed for user %s, deterministic text kept: %s", user_id, exc)
        return None
    story = completion.text.strip()
    return story if 0 < len(story) <= MAX_STORY_CHARS else None


def verify(db: Session, user_ids: list[str], week_of: date) -> dict[str, list[str]]:
    """The seed's checks per user: {user_id: [failed checks]} for users that fail any.

    A user that does not exist (deleted meanwhile) fails nothing: their brief is skipped, and they
    never reach the retry queue."""
    failures: dict[str, list[str]] = {}
    for row in db.execute(VERIFY_SQL, {"user_ids": list(user_ids), "week_of": week_of}):
        failed = [
            check
            for check in ("brief_exists", "insights_generated", "patterns_found", "velocity_calculated")
            if not getattr(row, check)
        ]
        if failed:
            failures[row.user_id] = failed
    return failures


def _reasons(outcome: BatchOutcome, failures: dict[str, list[str]]) -> dict[str, str]:
    return {
        user_id: outcome.errors.get(user_id) or "failed checks: " + ", ".join(checks)
        for user_id, checks in failures.items()
    }


# ---------------------------------------------------------------- one batch of a run


def generate_batch(
    db: Session,
    client: redis.Redis,
    user_ids: list[str],
    *,
    week_of: date | None = None,
    force_refresh: bool = False,
    llm: LLMProvider | None = None,
    run_id: uuid.UUID | None = None,
    unit_no: int | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """One batch; with a run unit, exactly once in effect however often it is delivered.

    The unit's week and force flag come from its run. The delivery that completes the run's last
    unit verifies the whole run and fills the retry queue.
    """
    if run_id is not None:
        if not job_runs.claim_unit(db, run_id, unit_no):
            db.rollback()
            return {"status": "duplicate", "run_id": str(run_id), "unit": unit_no}
        params = db.get(JobRun, run_id).result or {}
        week_of = date.fromisoformat(params["week_of"])
        force_refresh = bool(params.get("force_refresh"))
    outcome = compute_briefs(db, user_ids, week_of, force_refresh=force_refresh, llm=llm)
    reasons = _reasons(outcome, verify(db, user_ids, week_of))
    skipped = outcome.missing_users
    finished = None
    if run_id is not None:
        if reasons:
            db.execute(
                update(JobRunUnit)
                .where(JobRunUnit.run_id == run_id, JobRunUnit.unit_no == unit_no)
                .values(error=json.dumps(reasons))
            )
        ok = len(set(user_ids)) - len(reasons) - len(skipped)
        finished = job_runs.count_unit(db, run_id, succeeded=ok, failed=len(reasons), skipped=len(skipped))
        if finished is not None:
            _finalize_run(db, finished, policy or RetryPolicy())
    db.commit()
    invalidate_briefs(client, [(user_id, week_of) for user_id in outcome.written])
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
    db: Session, run_id: uuid.UUID, unit_no: int, user_ids: list[str], error: str, policy: RetryPolicy
) -> None:
    """A batch out of retries: its users count as failed and go through verification like any."""
    if not job_runs.claim_unit(db, run_id, unit_no, status="failed"):
        db.rollback()
        return
    db.execute(
        update(JobRunUnit)
        .where(JobRunUnit.run_id == run_id, JobRunUnit.unit_no == unit_no)
        .values(error=json.dumps({user_id: error[:500] for user_id in user_ids}))
    )
    finished = job_runs.count_unit(db, run_id, failed=len(set(user_ids)), error=error[:2000])
    if finished is not None:
        _finalize_run(db, finished, policy)
    db.commit()
    log.error("intelligence batch failed run=%s unit=%s users=%d: %s", run_id, unit_no, len(user_ids), error)


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
    job_runs.finish_run(db, run, status=status, result=result)
    run.result = result


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


# ---------------------------------------------------------------- the retry queue


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
    if job_switches.skip_if_disabled(db, RETRY_JOB_NAME, trigger=trigger, slot=slot, task_id=task_id):
        db.commit()
        return {"status": "skipped", "reason": "job disabled"}
    start = job_runs.start_run(db, RETRY_JOB_NAME, trigger, slot=slot, task_id=task_id, scope="retry queue")
    run = start.run
    if run is None or not start.created:
        db.rollback()
        return {"status": "skipped", "reason": f"slot {slot} already ran"}
    logs.bind(run_id=str(run.id))
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
        reasons = _reasons(outcome, verify(db, ids, week_of))
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
    job_runs.finish_run(db, run, status="failed" if exhausted else "success", result=result)
    db.commit()
    invalidate_briefs(client, written)
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


# ---------------------------------------------------------------- cache and reads

STATS_TTL_SECONDS = 8 * 24 * 3600
HEALTH_WINDOW_DAYS = 7


def brief_key(user_id: str, week_of: date | str) -> str:
    return f"brief:{user_id}:{week_of}"


def brief_tracking_key(user_id: str) -> str:
    """The set of a user's cached brief keys, so invalidation needs no keyspace scan."""
    return f"brief:keys:{user_id}"


def _stats_key(day: date) -> str:
    return f"brief:stats:{day.isoformat()}"


def brief_view(
    db: Session, client: redis.Redis, user_id: str, week_of: date | None, *, ttl_seconds: int
) -> dict[str, Any]:
    """The caller's brief for a week (None = latest): Redis first, then PostgreSQL."""
    key = brief_key(user_id, week_of or "latest")
    try:
        raw = client.get(key)
        _count(client, "hits" if raw else "misses")
    except redis.RedisError as exc:
        log.warning("redis unavailable, reading brief from PostgreSQL: %s", exc)
        raw = None
    if raw:
        return json.loads(raw)
    query = select(WeeklyBrief).where(WeeklyBrief.user_id == user_id)
    if week_of is None:
        query = query.order_by(WeeklyBrief.week_of.desc()).limit(1)
    else:
        query = query.where(WeeklyBrief.week_of == week_of)
    brief = db.scalars(query).first()
    if brief is None:
        what = "yet" if week_of is None else f"for the week of {week_of.isoformat()}"
        raise NotFound(f"no weekly brief {what}")
    view = {
        "week_of": brief.week_of.isoformat(),
        "week_stats": brief.week_stats,
        "main_story": brief.main_story,
        "insights": brief.insights,
        "patterns": brief.patterns,
        "velocity": brief.velocity,
        "story_source": brief.story_source,
        "generated_at": brief.generated_at.isoformat(),
    }
    try:
        _CACHE_SET(
            keys=[key, brief_tracking_key(user_id)], args=[json.dumps(view), ttl_seconds], client=client
        )
    except redis.RedisError as exc:
        log.warning("redis unavailable, brief not cached: %s", exc)
    return view


def _count(client: redis.Redis, outcome: str) -> None:
    key = _stats_key(datetime.now(UTC).date())
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, outcome, 1)
    pipe.expire(key, STATS_TTL_SECONDS)
    pipe.execute()


def invalidate_user_cache(client: redis.Redis, user_id: str) -> None:
    """Every cached brief of the user (their data changed)."""
    try:
        _CACHE_DROP(keys=[brief_tracking_key(user_id)], args=[1], client=client)
    except redis.RedisError as exc:
        log.warning("redis unavailable, brief cache of %s left to expire: %s", user_id, exc)


def invalidate_briefs(client: redis.Redis, written: list[tuple[str, date]]) -> None:
    """After regeneration: the week's brief and the user's 'latest' pointer."""
    if not written:
        return
    keys = [brief_key(u, week_of) for u, week_of in written] + [brief_key(u, "latest") for u, _ in written]
    try:
        client.delete(*keys)
    except redis.RedisError as exc:
        log.warning("redis unavailable, %d cached briefs left to expire: %s", len(written), exc)


# KEYS: cache key, tracking set; ARGV: value, ttl.
_CACHE_SET = _Script(
    """
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    redis.call('SADD', KEYS[2], KEYS[1])
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    """
)

# KEYS: the tracking set; ARGV: 1 (where the sets start).
_CACHE_DROP = _Script(DROP_TRACKED_LUA)


# ---------------------------------------------------------------- health (seed's monitor)

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
    if not processed or run.duration_ms is None:
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
            pipe.hmget(_stats_key(day), "hits", "misses")
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


def parse_week_of(raw: str, latest: date) -> date:
    """A week_of from a request path, or InvalidInput naming the field."""
    try:
        week_of = date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            "invalid week_of", {"path": {"week_of": ["Not a valid date (YYYY-MM-DD)."]}}
        ) from None
    problem = week_of_problem(week_of, latest)
    if problem:
        raise InvalidInput("invalid week_of", {"path": {"week_of": [problem]}})
    return week_of
