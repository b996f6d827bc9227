"""Publishing after the PostgreSQL commit: the one path every message takes, from the web and
from the workers alike (PostgreSQL first, broker second).

Broker-down policy, the same everywhere: one attempt, no blocking retries; a publish that fails is
logged and answered with None. The work is already recorded in PostgreSQL, and its family's
sweeper or next run publishes it again (pending run units, overdue analysis jobs, operators'
pending runs, parked rows). After a failure the process skips publishing for
PUBLISH_PAUSE_SECONDS, so a burst of web requests during an outage costs no Redis round trip (and
no connect timeout) at all; a worker lifts the pause when its next task starts (the broker that
delivered it is back).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError

from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.analysis.jobs import RunMessage, record_published
from focus_app.services.jobkit import fanout
from focus_app.services.jobkit.fanout import Unit
from focus_app.services.ops import task_owners

log = logging.getLogger(__name__)

# What a broker, or Redis recording a task's owner, raises while it is down or refusing writes.
BROKER_DOWN: tuple[type[BaseException], ...] = (BrokerError, redis.RedisError, OSError)

# Monotonic time until which this process does not try to publish (see the module docstring).
_paused_until = 0.0


def paused() -> bool:
    return time.monotonic() < _paused_until


def resume(**_kwargs: object) -> None:
    """Lift the pause (a worker's task_prerun: its message just came from the broker)."""
    global _paused_until
    _paused_until = 0.0


def _pause(task_name: str, what: str, exc: BaseException) -> None:
    global _paused_until
    seconds = settings().publish_pause_seconds
    _paused_until = time.monotonic() + seconds
    log.warning(
        "%s unavailable, %s not published now (its sweeper will); no publishing for %.0f s: %s",
        what,
        task_name,
        seconds,
        exc,
    )


def publish(
    task_name: str,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    owner: str | None = None,
    task_id: str | None = None,
    **options: Any,
) -> str | None:
    """Send one message; its task id, or None when the broker is down.

    `owner` (a user id or task_owners.ADMIN_OWNER) lets `GET /jobs/{task_id}` answer its caller.
    """
    celery = current_app.extensions["celery"]
    task_id = task_id or str(uuid.uuid4())
    if paused():
        log.info("publishing paused after a broker failure, %s left to its sweeper", task_name)
        return None
    try:
        if owner is not None:
            task_owners.record_owner(redis_client(), task_id, owner, celery.conf.result_expires)
        celery.send_task(
            task_name, args=list(args), kwargs=kwargs or {}, task_id=task_id, retry=False, **options
        )
    except BROKER_DOWN as exc:
        _pause(task_name, "broker", exc)
        return None
    return task_id


def publish_units(
    task_name: str, units: Iterable[Unit], args_of: Callable[[Any], list[Any]] = lambda payload: [payload]
) -> int:
    """One message per run unit, under the unit's own task id; a unit whose publish fails stays
    pending for the unit sweeper.

    A unit's payload is the task's first argument (a batch of ids) unless `args_of` spreads it.
    """
    published = 0
    for unit in units:
        kwargs = {"run_id": str(unit.run_id), "unit_no": unit.unit_no}
        message_id = fanout.task_id(unit)
        if publish(task_name, args=args_of(unit.payload), kwargs=kwargs, task_id=message_id) is not None:
            published += 1
    return published


def publish_analysis_runs(messages: Iterable[RunMessage]) -> list[str | None]:
    """`analysis.run` for each job, its task id recorded on the job; None where the broker was down
    (the job stays pending and the sweeper publishes it)."""
    task_ids = []
    published = {}
    for message in messages:
        # Its result is not kept: no result channel to subscribe to per message (a bulk replay
        # publishes thousands).
        task_id = publish(
            "analysis.run",
            args=message.args,
            kwargs=message.kwargs,
            priority=message.celery_priority,
            ignore_result=True,
        )
        if task_id is not None:
            published[message.job_id] = task_id
        task_ids.append(task_id)
    record_published(db_session(), published)
    return task_ids
