"""Worker process hooks, and the publish-time stamp every task message carries."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun, task_success, worker_process_init
from flask import Flask

from focus_app import logs
from focus_app.services.ops import metrics
from workers import publish

log = logging.getLogger(__name__)


def connect(app: Flask) -> None:
    def dispose_inherited_pool(**_kwargs: object) -> None:
        # A forked child must open its own connections (SQLAlchemy pooling docs, Superset does this).
        app.extensions["db"].after_fork()

    periodic = {entry["task"] for entry in app.extensions["celery"].conf.beat_schedule.values()}

    def record_periodic_success(sender: Task | None = None, **_kwargs: object) -> None:
        """Feeds focus_periodic_task_last_success_timestamp_seconds; metrics never fail a task."""
        if sender is None or sender.name not in periodic:
            return
        try:
            metrics.record_periodic_success(app.extensions["redis"], sender.name, time.time())
        except redis.RedisError as exc:
            log.warning("redis unavailable, success of %s not recorded for metrics: %s", sender.name, exc)

    worker_process_init.connect(dispose_inherited_pool, weak=False)
    task_success.connect(record_periodic_success, weak=False)
    # A task's message came from the broker: lift a pause a failed publish left in this process.
    task_prerun.connect(publish.resume, weak=False)


@before_task_publish.connect
def stamp_sent_at(headers: dict[str, Any] | None = None, **_kwargs: object) -> None:
    """The queue-age metric reads this header from the oldest waiting message of each queue."""
    if headers is not None:
        headers[metrics.SENT_AT_HEADER] = time.time()


@task_prerun.connect
def bind_task(task_id: str | None = None, task: Task | None = None, **_kwargs: object) -> None:
    """Every line a task logs names the task; services add job ids and user ids."""
    logs.clear()
    logs.bind(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def unbind_task(**_kwargs: object) -> None:
    logs.clear()
