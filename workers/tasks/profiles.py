"""focus.update_profiles (periodic discovery + fan-out) and focus.compute_profiles (one batch)."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import SQLAlchemyError

from focus_app.extensions import db_session, redis_client, settings
from focus_app.services import job_runs, profile_updates
from workers.arguments import (
    InvalidTaskArguments,
    one_of,
    optional_non_negative_int,
    optional_uuid,
    user_id_list,
)
from workers.publish import publish_units
from workers.retry import is_transient, out_of_retries, retry_later


@shared_task(bind=True, name="focus.update_profiles", ignore_result=False)
def update_profiles(self, user_ids=None, trigger="manual"):
    """Find users whose profile is out of date and fan them out in batches."""
    one_of(trigger, "trigger", ("beat", "manual", "api"))
    if user_ids is not None:
        user_id_list(user_ids)
    config = settings()
    slot = None
    if trigger == "beat":
        slot = job_runs.beat_slot(config.profile_update_interval_seconds)
    try:
        plan = profile_updates.plan_update(
            db_session(),
            redis_client(),
            trigger=trigger,
            task_id=self.request.id,
            batch_size=config.profile_batch_size,
            slot=slot,
            user_ids=user_ids,
            republish_after_seconds=config.unit_republish_after_seconds,
        )
    except SQLAlchemyError as exc:
        if is_transient(exc):
            raise retry_later(self, exc) from exc
        raise
    published = publish_units(compute_profiles, plan.units)
    return {**plan.summary, "published": published}


@shared_task(bind=True, name="focus.compute_profiles", ignore_result=False)
def compute_profiles(self, user_ids, run_id=None, unit_no=None):
    """Compute the profiles of one batch of users in a few set-based statements."""
    user_id_list(user_ids)
    run_uuid = optional_uuid(run_id, "run_id")
    unit = optional_non_negative_int(unit_no, "unit_no")
    if (run_uuid is None) != (unit is None):
        raise InvalidTaskArguments("run_id and unit_no go together: give both or neither")
    try:
        return profile_updates.compute_batch(
            db_session(),
            redis_client(),
            user_ids,
            min_sessions=settings().profile_min_sessions,
            run_id=run_uuid,
            unit_no=unit,
        )
    except SQLAlchemyError as exc:
        db_session().rollback()
        if is_transient(exc) and not out_of_retries(self):
            raise retry_later(self, exc) from exc
        if run_uuid is not None:
            # Out of retries, or an error a retry cannot fix: count the batch as failed. If the
            # database is still down this fails too and the unit is republished by a later run.
            profile_updates.record_batch_failure(
                db_session(), run_uuid, unit, len(user_ids), f"{type(exc).__name__}: {exc}"
            )
        raise
