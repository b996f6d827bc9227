"""maintenance.consolidate_profiles (periodic discovery + fan-out) and maintenance.consolidate_profile
(one entity): the profile-attribute family of seed 003, on the `maintenance` queue."""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task

from focus_app.extensions import db_session, llm_provider, settings
from focus_app.services.attributes import job
from workers.arguments import unit_of
from workers.base import FocusTask, error_text
from workers.publish import publish_units


@shared_task(base=FocusTask, bind=True, name="maintenance.consolidate_profiles", ignore_result=False)
def consolidate_profiles(self: FocusTask, trigger: str = "manual", dry_run: bool = False) -> dict[str, Any]:
    """Find every entity whose attributes changed since its last consolidation and fan them out."""
    config = settings()
    plan = job.plan_run(
        db_session(),
        trigger=trigger,
        task_id=self.request.id,
        slot=self.beat_slot(trigger, config.profile_maintenance_interval_minutes * 60),
        dry_run=dry_run,
    )
    # A unit's payload is [entity_id, entity_type, dry_run]: the task's positional arguments.
    return {**plan.summary, "published": publish_units(consolidate_profile.name, plan.units, args_of=list)}


def _record_failure(task: FocusTask, exc: BaseException, arguments: dict[str, Any]) -> None:
    job.record_failure(
        db_session(),
        arguments["entity_id"],
        arguments.get("entity_type") or "user",
        error_text(exc),
        unit=unit_of(arguments.get("run_id"), arguments.get("unit_no")),
        trigger=arguments.get("trigger") or "manual",
        task_id=task.request.id,
    )


@shared_task(
    base=FocusTask,
    bind=True,
    name="maintenance.consolidate_profile",
    ignore_result=False,
    gave_up=_record_failure,
    max_retries=None,  # waits for the model's turn are not retries (the base caps transient ones)
)
def consolidate_profile(
    self: FocusTask,
    entity_id: str,
    entity_type: str = "user",
    dry_run: bool = False,
    run_id: uuid.UUID | None = None,
    unit_no: int | None = None,
    trigger: str = "manual",
) -> dict[str, Any]:
    """Consolidate one entity's attributes (merge, resolve, remove noise) in one transaction."""
    result = job.consolidate_entity(
        db_session(),
        llm_provider("consolidation"),
        entity_id,
        entity_type,
        dry_run=dry_run,
        trigger=trigger,
        task_id=self.request.id,
        unit=unit_of(run_id, unit_no),
    )
    if result["status"] == "waiting":
        raise self.retry(countdown=result["retry_in"], exc=job.WaitingForTurn(result["detail"]))
    if result["status"] == "failed":
        raise job.ConsolidationFailed(result["error"])
    return result
