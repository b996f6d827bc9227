"""Publishing run units after their PostgreSQL commit (PostgreSQL first, broker second)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from celery import Task
from kombu.exceptions import OperationalError as BrokerError

log = logging.getLogger(__name__)


def publish_units(task: Task, units: Iterable[tuple[uuid.UUID, int, list[str]]]) -> int:
    """One message per unit; a publish that fails leaves its unit pending for the sweeper."""
    published = 0
    for run_id, unit_no, user_ids in units:
        try:
            task.apply_async(args=[user_ids], kwargs={"run_id": str(run_id), "unit_no": unit_no})
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
