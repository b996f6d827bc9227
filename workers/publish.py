"""Publishing run units after their PostgreSQL commit (PostgreSQL first, broker second)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError as BrokerError

log = logging.getLogger(__name__)


def publish_units(
    task: Task,
    units: Iterable[tuple[uuid.UUID, int, Any]],
    args_of: Callable[[Any], list[Any]] = lambda payload: [payload],
) -> int:
    """One message per unit; a publish that fails leaves its unit pending for the sweeper.

    A unit's payload is the task's first argument (a batch of user ids) unless `args_of` says
    how to spread it.
    """
    published = 0
    for run_id, unit_no, payload in units:
        try:
            task.apply_async(args=args_of(payload), kwargs={"run_id": str(run_id), "unit_no": unit_no})
            published += 1
        except BrokerError as exc:
            log.warning(
                "broker unavailable, %s batch %s/%s left for republishing: %s",
                task.name,
                run_id,
                unit_no,
                exc,
            )
    return published
