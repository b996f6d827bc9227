"""focus.update_profiles (periodic discovery + fan-out) and focus.compute_profiles (one batch)."""

from __future__ import annotations

import uuid
from typing import Any

from celery import shared_task

from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.focus import profile_job
from workers.arguments import unit_of
from workers.base import FocusTask, error_text
from workers.publish import publish_units


@shared_task(base=FocusTask, bind=True, name="focus.update_profiles", ignore_result=False)
def update_profiles(
    self: FocusTask, user_ids: list[str] | None = None, trigger: str = "manual"
) -> dict[str, Any]:
    """Find users whose profile is out of date and fan them out in batches."""
    config = settings()
    plan = profile_job.plan_update(
        db_session(),
        redis_client(),
        trigger=trigger,
        task_id=self.request.id,
        batch_size=config.profile_batch_size,
        slot=self.beat_slot(trigger, config.profile_update_interval_seconds),
        user_ids=user_ids,
    )
    return {**plan.summary, "published": publish_units(compute_profiles.name, plan.units)}


def _count_failed_batch(task: FocusTask, exc: BaseException, arguments: dict[str, Any]) -> None:
    unit = unit_of(arguments.get("run_id"), arguments.get("unit_no"))
    if unit is not None:
        profile_job.record_batch_failure(db_session(), unit, len(arguments["user_ids"]), error_text(exc))


@shared_task(
    base=FocusTask, bind=True, name="focus.compute_profiles", ignore_result=False, gave_up=_count_failed_batch
)
def compute_profiles(
    self: FocusTask, user_ids: list[str], run_id: uuid.UUID | None = None, unit_no: int | None = None
) -> dict[str, Any]:
    """Compute the profiles of one batch of users in a few set-based statements."""
    return profile_job.compute_batch(
        db_session(),
        redis_client(),
        user_ids,
        min_sessions=settings().profile_min_sessions,
        unit=unit_of(run_id, unit_no),
    )
