"""Publishing tasks from a request, after the PostgreSQL commit (PostgreSQL first, broker second).

A request never fails because the broker is down: the work is already recorded in PostgreSQL and
the job family's sweeper publishes it again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError

from focus_app.extensions import redis_client
from focus_app.services import task_tracking

log = logging.getLogger(__name__)


def enqueue(
    task_name: str,
    *,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    owner: str | None = None,
    **options: Any,
) -> str | None:
    """Publish once, without blocking retries; the task id, or None when the broker is down."""
    celery = current_app.extensions["celery"]
    task_id = str(uuid.uuid4())
    try:
        if owner is not None:
            task_tracking.record_owner(redis_client(), task_id, owner, celery.conf.result_expires)
        celery.send_task(
            task_name, args=list(args), kwargs=kwargs or {}, task_id=task_id, retry=False, **options
        )
    except (BrokerError, redis.RedisError, OSError) as exc:
        log.warning("broker unavailable, %s not published now (its sweeper will): %s", task_name, exc)
        return None
    except RuntimeError as exc:
        # Celery's Redis result backend subscribes to the task's result channel before publishing
        # and reports a lost connection as RuntimeError ("Retry limit exceeded ... result store");
        # it reconnects on the next publish once Redis is back.
        if not isinstance(exc.__cause__, redis.RedisError):
            raise
        log.warning("redis unavailable, %s not published now (its sweeper will): %s", task_name, exc)
        return None
    return task_id
