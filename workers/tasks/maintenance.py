"""maintenance.consolidate_profiles (periodic discovery + fan-out) and maintenance.consolidate_profile."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import SQLAlchemyError

from focus_app.extensions import db_session, settings
from focus_app.services import profile_maintenance
from focus_app.services.job_runs import beat_slot
from focus_app.services.llm import LLMError, provider_from_settings
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


@shared_task(bind=True, name="maintenance.consolidate_profiles", ignore_result=False)
def consolidate_profiles(self, trigger="manual", dry_run=False):
    """Find every entity whose attributes changed since its last consolidation and fan them out."""
    one_of(trigger, "trigger", ("beat", "manual", "api"))
    boolean(dry_run, "dry_run")
    config = settings()
    slot = beat_slot(config.profile_maintenance_interval_minutes * 60) if trigger == "beat" else None
    try:
        plan = profile_maintenance.plan_run(
            db_session(),
            trigger=trigger,
            task_id=self.request.id,
            slot=slot,
            dry_run=dry_run,
            republish_after_seconds=config.unit_republish_after_seconds,
        )
    except SQLAlchemyError as exc:
        db_session().rollback()
        if is_transient(exc):
            raise retry_later(self, exc) from exc
        raise
    # A unit's payload is [entity_id, entity_type, dry_run]: the task's positional arguments.
    return {**plan.summary, "published": publish_units(consolidate_profile, plan.units, args_of=list)}


@shared_task(bind=True, name="maintenance.consolidate_profile", ignore_result=False)
def consolidate_profile(
    self, entity_id, entity_type="user", dry_run=False, run_id=None, unit_no=None, trigger="manual"
):
    """Consolidate one entity's attributes (merge, resolve, remove noise) in one transaction."""
    user_id_list([entity_id], "entity_id")
    one_of(entity_type, "entity_type", ("user", "bot"))
    one_of(trigger, "trigger", ("beat", "manual", "api"))
    boolean(dry_run, "dry_run")
    run_uuid = optional_uuid(run_id, "run_id")
    unit = optional_non_negative_int(unit_no, "unit_no")
    if (run_uuid is None) != (unit is None):
        raise InvalidTaskArguments("run_id and unit_no go together: give both or neither")
    try:
        result = profile_maintenance.consolidate_entity(
            db_session(),
            provider_from_settings(settings()),
            entity_id,
            entity_type,
            dry_run=dry_run,
            trigger=trigger,
            task_id=self.request.id,
            run_id=run_uuid,
            unit_no=unit,
        )
    except (SQLAlchemyError, LLMError) as exc:
        db_session().rollback()
        retryable = is_transient(exc) if isinstance(exc, SQLAlchemyError) else exc.retryable
        if retryable and not out_of_retries(self):
            raise retry_later(self, exc) from exc
        # Out of retries, or an error a retry cannot fix: recorded as failed, attributes untouched.
        profile_maintenance.record_failure(
            db_session(),
            entity_id,
            entity_type,
            f"{type(exc).__name__}: {exc}",
            run_id=run_uuid,
            unit_no=unit,
            trigger=trigger,
            task_id=self.request.id,
        )
        raise
    if result["status"] == "failed":
        raise profile_maintenance.ConsolidationFailed(result["error"])
    return result
