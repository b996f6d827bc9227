"""intelligence.weekly (a tick every few minutes: the briefs due at Monday 02:00 in each user's
timezone, fan-out + progress), intelligence.generate (one batch), intelligence.retry_failed
(periodic retry queue; a batch whose message was lost is ops.republish_lost_units' work)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from celery import shared_task

from focus_app.extensions import db_session, llm_provider, redis_client, settings
from focus_app.services.intelligence import job, retry_queue, weeks
from workers.arguments import ended_week, unit_of
from workers.base import FocusTask, error_text
from workers.publish import publish_units


def _latest_week() -> date:
    return weeks.latest_ended_week(datetime.now(UTC))


@shared_task(base=FocusTask, bind=True, name="intelligence.weekly", ignore_result=False)
def weekly(
    self: FocusTask,
    trigger: str = "manual",
    week_of: date | None = None,
    user_ids: list[str] | None = None,
    force_refresh: bool = False,
) -> dict[str, Any]:
    """A tick (the briefs that came due, each in its user's timezone), or the week and users asked
    for: plan the batches, publish them, and work through them itself, reporting progress."""
    config = settings()
    db = db_session()
    plan = job.plan_weekly(
        db,
        now=datetime.now(UTC),
        trigger=trigger,
        task_id=self.request.id,
        batch_size=config.intelligence_batch_size,
        catch_up_weeks=config.intelligence_catch_up_weeks,
        week_of=None if week_of is None else ended_week(week_of, _latest_week()),
        user_ids=user_ids,
        force_refresh=force_refresh,
    )
    if plan.run_id is None:
        return plan.summary
    publish_units(generate.name, plan.units, args_of=job.unit_args)
    return job.work_through(
        db,
        redis_client(),
        plan,
        llm=llm_provider("brief"),
        policy=retry_queue.RetryPolicy.from_settings(config),
        progress=lambda meta: self.update_state(state="PROGRESS", meta=meta),
    )


def _count_failed_batch(task: FocusTask, exc: BaseException, arguments: dict[str, Any]) -> None:
    unit = unit_of(arguments.get("run_id"), arguments.get("unit_no"))
    if unit is not None:
        policy = retry_queue.RetryPolicy.from_settings(settings())
        job.record_batch_failure(db_session(), unit, arguments["user_ids"], error_text(exc), policy)


@shared_task(
    base=FocusTask, bind=True, name="intelligence.generate", ignore_result=False, gave_up=_count_failed_batch
)
def generate(
    self: FocusTask,
    user_ids: list[str],
    week_of: date | None = None,
    force_refresh: bool = False,
    run_id: uuid.UUID | None = None,
    unit_no: int | None = None,
) -> dict[str, Any]:
    """Briefs for one batch of users (a unit of a weekly run, or a week given by hand)."""
    unit = unit_of(run_id, unit_no)
    config = settings()
    return job.generate_batch(
        db_session(),
        redis_client(),
        user_ids,
        week_of=None if week_of is None and unit else ended_week(week_of, _latest_week(), required=True),
        force_refresh=force_refresh,
        llm=llm_provider("brief"),
        unit=unit,
        policy=retry_queue.RetryPolicy.from_settings(config),
    )


@shared_task(base=FocusTask, bind=True, name="intelligence.retry_failed", ignore_result=False)
def retry_failed(self: FocusTask, trigger: str = "manual") -> dict[str, Any]:
    """Retry the due users of the retry queue."""
    config = settings()
    return retry_queue.process_retry_queue(
        db_session(),
        redis_client(),
        trigger=trigger,
        task_id=self.request.id,
        slot=self.beat_slot(trigger, config.intelligence_retry_interval_seconds),
        policy=retry_queue.RetryPolicy.from_settings(config),
        llm=llm_provider("brief"),
    )
