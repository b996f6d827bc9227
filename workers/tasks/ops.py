"""ops.archive_failed_analysis_jobs (dead letters older than the window leave the list),
ops.replay_parked (parked poison messages published again, under a new task id) and
ops.republish_lost_units (run units whose message is gone published again, every family's)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, shared_task

from focus_app.extensions import db_session, settings
from focus_app.services import intelligence
from focus_app.services.analysis import recovery
from focus_app.services.attributes import job as attributes_job
from focus_app.services.focus import profile_job
from focus_app.services.intelligence import job as intelligence_job
from focus_app.services.jobkit import runs
from focus_app.services.ops import inflight, parked
from focus_app.services.ops.task_owners import ADMIN_OWNER
from workers.base import FocusTask
from workers.celery_app import broker_layout
from workers.publish import publish, publish_units
from workers.tasks import attributes, focus
from workers.tasks import intelligence as intelligence_tasks

log = logging.getLogger("parked_tasks")

# Each fan-out job's unit task, and how a unit's payload becomes that task's positional arguments.
UNIT_TASKS: dict[str, tuple[str, Callable[[Any], list[Any]]]] = {
    profile_job.JOB_NAME: (focus.compute_profiles.name, lambda payload: [payload]),
    intelligence.JOB_NAME: (intelligence_tasks.generate.name, intelligence_job.unit_args),
    attributes_job.JOB_NAME: (attributes.consolidate_profile.name, list),
    attributes_job.ENTITY_JOB_NAME: (attributes.consolidate_profile.name, list),
}
# How long live workers get to say which of the asked task ids they hold.
WORKER_REPLY_SECONDS = 2.0


@shared_task(base=FocusTask, bind=True, name="ops.archive_failed_analysis_jobs", ignore_result=False)
def archive_failed_analysis_jobs(
    self: FocusTask, older_than_days: int | None = None, trigger: str = "manual"
) -> dict[str, Any]:
    if (skipped := self.skipped_while_disabled(trigger, 24 * 3600)) is not None:
        return skipped
    window = settings().analysis_archive_after_days if older_than_days is None else older_than_days
    return {"archived": recovery.archive_failed(db_session(), window), "older_than_days": window}


@shared_task(base=FocusTask, bind=True, name="ops.replay_parked", ignore_result=False)
def replay_parked(self: FocusTask, task_id: str | None = None) -> dict[str, Any]:
    """Replay one parked message (`--args '["<task id>"]'`) or every one not replayed yet."""
    db = db_session()
    replayed = []
    for row in parked.open_parked(db, task_id):
        options = {"queue": row.queue} if row.queue else {}
        new_id = publish(row.task_name, args=row.args, kwargs=row.kwargs, **options)
        if new_id is None:
            continue  # the broker is down: it stays parked
        # Published first: a failed commit here means a second replay, never a lost one.
        parked.mark_replayed(db, row.id, new_id)
        log.info("replayed parked task %s id=%s as %s", row.task_name, row.task_id, new_id)
        replayed.append({"task_id": row.task_id, "task_name": row.task_name, "replay_task_id": new_id})
    return {"replayed": replayed}


@shared_task(base=FocusTask, bind=True, name="ops.republish_lost_units", ignore_result=False)
def republish_lost_units(self: FocusTask, trigger: str = "manual") -> dict[str, Any]:
    """Publish again the pending run units, and the runs asked for but never started (the broker
    was down when an operator triggered them), whose message is in no queue and with no live worker."""
    config = settings()
    if (skipped := self.skipped_while_disabled(trigger, config.unit_sweep_interval_seconds)) is not None:
        return skipped
    db = db_session()
    units = inflight.pending_units(db, UNIT_TASKS, config.unit_republish_after_seconds)
    requests = runs.stale_requests(db, config.unit_republish_after_seconds)
    if not units and not requests:
        return {"pending": 0, "lost": 0, "republished": 0, "requests_published": 0}
    router = self.app.amqp.router
    task_names = [task_name for task_name, _ in UNIT_TASKS.values()] + [r.job_name for r in requests]
    queues = {router.route({}, task_name)["queue"].name for task_name in task_names}
    with self.app.connection_for_read() as connection:
        broker: redis.Redis = connection.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
        lists = [name for queue in queues for name in broker_layout([queue]).queue_lists[queue]]
        unseen = inflight.unseen(
            inflight.lookup_ids(units) | {r.task_id for r in requests},
            lambda: inflight.waiting_task_ids(broker, lists),
            lambda ids: _held_by_workers(self.app, ids),
        )
    lost = inflight.still_pending(db, inflight.lost_units(units, unseen))
    republished = 0
    for job_name, (task_name, args_of) in UNIT_TASKS.items():
        mine = [pending.unit for pending in lost if pending.job_name == job_name]
        republished += publish_units(task_name, mine, args_of=args_of) if mine else 0
    requested = sum(
        publish(r.job_name, kwargs=r.kwargs, task_id=r.task_id, owner=ADMIN_OWNER) is not None
        for r in requests
        if r.task_id in unseen
    )
    return {
        "pending": len(units),
        "lost": len(lost),
        "republished": republished,
        "requests_published": requested,
    }


def _held_by_workers(app: Celery, task_ids: list[str]) -> set[str]:
    """Which of the task ids the live workers hold (running, prefetched, waiting for a retry)."""
    if not task_ids:
        return set()
    replies = app.control.inspect(timeout=WORKER_REPLY_SECONDS).query_task(*task_ids) or {}
    return {task_id for held in replies.values() for task_id in held or {}}
