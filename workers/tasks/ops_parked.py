"""ops.replay_parked: publish parked poison messages again, under a new task id."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError

from focus_app.extensions import db_session
from focus_app.services import parked_tasks
from workers.arguments import InvalidTaskArguments

log = logging.getLogger("parked_tasks")


@shared_task(bind=True, name="ops.replay_parked", ignore_result=False)
def replay_parked(self, task_id=None):
    """Replay one parked message (`--args '["<task id>"]'`) or every one not replayed yet."""
    if task_id is not None and not isinstance(task_id, str):
        raise InvalidTaskArguments(f"task_id must be a task id string, got {task_id!r:.100}")
    db = db_session()
    replayed = []
    for row in parked_tasks.open_parked(db, task_id):
        new_id = str(uuid.uuid4())
        options = {"queue": row.queue} if row.queue else {}
        try:
            self.app.send_task(row.task_name, args=row.args, kwargs=row.kwargs, task_id=new_id, **options)
        except BrokerError as exc:
            log.warning("broker unavailable, parked task %s stays parked: %s", row.task_id, exc)
            continue
        # Published first: a failed commit here means a second replay, never a lost one.
        parked_tasks.mark_replayed(db, row.id, new_id)
        log.info("replayed parked task %s id=%s as %s", row.task_name, row.task_id, new_id)
        replayed.append({"task_id": row.task_id, "task_name": row.task_name, "replay_task_id": new_id})
    return {"replayed": replayed}
