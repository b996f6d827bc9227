"""intelligence.weekly (Monday 02:00, fan-out + progress), intelligence.generate (one batch),
intelligence.retry_failed (periodic retry queue)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from celery import shared_task
from sqlalchemy.exc import SQLAlchemyError

from focus_app.extensions import db_session, redis_client, settings
from focus_app.services import intelligence, job_runs
from focus_app.services.llm import provider_from_settings
from workers.arguments import (
    InvalidTaskArguments,
    boolean,
    one_of,
    optional_non_negative_int,
    optional_uuid,
    user_id_list,
)
from workers.publish import publish_units
from workers.retry import is_transient, out_of_retries, retry_later

log = logging.getLogger("weekly_intelligence")


def _week_of(value, required: bool = False) -> date:
    """A hand-typed week_of: an ended ISO week's Monday; default the week that just ended."""
    latest = intelligence.week_just_ended(datetime.now(UTC), settings().timezone)
    if value is None and not required:
        return latest
    try:
        week_of = date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidTaskArguments(f"week_of must be a date YYYY-MM-DD, got {value!r:.100}") from None
    problem = intelligence.week_of_problem(week_of, latest)
    if problem:
        raise InvalidTaskArguments(f"week_of {problem}, got {value!r:.100}")
    return week_of


@shared_task(bind=True, name="intelligence.weekly", ignore_result=False)
def weekly(self, trigger="manual", week_of=None, user_ids=None, force_refresh=False):
    """Plan the week's batches, publish them, and work through them itself, reporting progress."""
    one_of(trigger, "trigger", ("beat", "manual", "api"))
    if user_ids is not None:
        user_id_list(user_ids)
    boolean(force_refresh, "force_refresh")
    config = settings()
    if trigger == "beat":
        now = datetime.now(UTC)
        if not intelligence.beat_window_open(now, config.timezone, config.intelligence_grace_seconds):
            return {"status": "skipped", "reason": "outside the Monday 02:00 window and its grace period"}
    week = _week_of(week_of)
    db = db_session()
    try:
        plan = intelligence.plan_weekly(
            db,
            trigger=trigger,
            task_id=self.request.id,
            week_of=week,
            batch_size=config.intelligence_batch_size,
            user_ids=user_ids,
            force_refresh=force_refresh,
        )
    except SQLAlchemyError as exc:
        db.rollback()
        if is_transient(exc):
            raise retry_later(self, exc) from exc
        raise
    if plan.run_id is None:
        return plan.summary
    publish_units(generate, plan.units)
    self.update_state(state="PROGRESS", meta=intelligence.run_progress(db, plan.run_id))
    llm, policy = provider_from_settings(config), intelligence.RetryPolicy.from_settings(config)
    for run_id, unit_no, batch in plan.units:
        try:
            intelligence.generate_batch(
                db, redis_client(), batch, llm=llm, run_id=run_id, unit_no=unit_no, policy=policy
            )
        except SQLAlchemyError as exc:
            # Its published message (retried with backoff) still covers this batch.
            db.rollback()
            log.warning("batch %s/%s left to its generate task: %s", run_id, unit_no, exc)
        self.update_state(state="PROGRESS", meta=intelligence.run_progress(db, run_id))
    return intelligence.run_summary(db, plan.run_id)


@shared_task(bind=True, name="intelligence.generate", ignore_result=False)
def generate(self, user_ids, week_of=None, force_refresh=False, run_id=None, unit_no=None):
    """Briefs for one batch of users (a unit of a weekly run, or a week given by hand)."""
    user_id_list(user_ids)
    run_uuid = optional_uuid(run_id, "run_id")
    unit = optional_non_negative_int(unit_no, "unit_no")
    if (run_uuid is None) != (unit is None):
        raise InvalidTaskArguments("run_id and unit_no go together: give both or neither")
    week = None if run_uuid is not None else _week_of(week_of, required=True)
    boolean(force_refresh, "force_refresh")
    config = settings()
    policy = intelligence.RetryPolicy.from_settings(config)
    db = db_session()
    try:
        return intelligence.generate_batch(
            db,
            redis_client(),
            user_ids,
            week_of=week,
            force_refresh=force_refresh,
            llm=provider_from_settings(config),
            run_id=run_uuid,
            unit_no=unit,
            policy=policy,
        )
    except SQLAlchemyError as exc:
        db.rollback()
        if is_transient(exc) and not out_of_retries(self):
            raise retry_later(self, exc) from exc
        if run_uuid is not None:
            intelligence.record_batch_failure(
                db, run_uuid, unit, user_ids, f"{type(exc).__name__}: {exc}", policy
            )
        raise


@shared_task(bind=True, name="intelligence.retry_failed", ignore_result=False)
def retry_failed(self, trigger="manual"):
    """Retry the due users of the retry queue; republish weekly batches whose message was lost."""
    one_of(trigger, "trigger", ("beat", "manual", "api"))
    config = settings()
    slot = None
    if trigger == "beat":
        slot = job_runs.beat_slot(config.intelligence_retry_interval_seconds)
    db = db_session()
    try:
        lost = intelligence.lost_units(db, config.unit_republish_after_seconds)
        summary = intelligence.process_retry_queue(
            db,
            redis_client(),
            trigger=trigger,
            task_id=self.request.id,
            slot=slot,
            policy=intelligence.RetryPolicy.from_settings(config),
            llm=provider_from_settings(config),
        )
    except SQLAlchemyError as exc:
        db.rollback()
        if is_transient(exc):
            raise retry_later(self, exc) from exc
        raise
    return {**summary, "republished": publish_units(generate, lost)}
