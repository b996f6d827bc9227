"""ops.archive_failed_analysis_jobs (dead letters older than the window leave the list) and
ops.replay_parked (parked poison messages published again, under a new task id)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from focus_app.extensions import db_session, settings
from focus_app.services.analysis import recovery
from focus_app.services.ops import parked
from workers.base import FocusTask
from workers.publish import publish

log = logging.getLogger("parked_tasks")


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
