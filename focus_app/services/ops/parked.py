"""Poison messages: count the deliveries of each message, park the ones delivered too often.

A task that kills its worker (segfault, OOM, os._exit) is never acknowledged, so late acks and
reject-on-worker-lost hand it out again and again. Counting executions per message in Redis and
parking the message in PostgreSQL after N breaks that loop without losing the work: the row keeps
the task's name and arguments until an operator replays it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models.ops import ParkedTask
from focus_app.services.jobkit import keys

log = logging.getLogger("parked_tasks")


def count_delivery(client: redis.Redis, task_id: str, retries: int) -> int | None:
    """This delivery's number (1 for the first); None when Redis cannot count (the task runs)."""
    key = keys.deliveries(task_id, retries)
    try:
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, keys.DELIVERY_COUNT_TTL_SECONDS)
        count, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("delivery count unavailable for task %s: %s", task_id, exc)
        return None
    return int(count)


@dataclass(frozen=True)
class Delivery:
    task_id: str
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    deliveries: int


def park(db: Session, delivery: Delivery, max_deliveries: int) -> None:
    """Keep the message in PostgreSQL (once per task id); the caller then drops it from the broker."""
    reason = f"delivered {delivery.deliveries} times, limit {max_deliveries}: its worker died every time"
    db.execute(
        pg_insert(ParkedTask)
        .values(
            task_id=delivery.task_id,
            task_name=delivery.task_name,
            args=list(delivery.args),
            kwargs=dict(delivery.kwargs),
            queue=delivery.queue,
            deliveries=delivery.deliveries,
            reason=reason,
        )
        .on_conflict_do_nothing(index_elements=[ParkedTask.task_id])
    )
    db.commit()
    log.error("PARKED task %s id=%s: %s", delivery.task_name, delivery.task_id, reason)


def open_parked(db: Session, task_id: str | None = None) -> list[ParkedTask]:
    """Parked messages not replayed yet (one, or all), oldest first."""
    query = select(ParkedTask).where(ParkedTask.replayed_at.is_(None)).order_by(ParkedTask.parked_at)
    if task_id is not None:
        query = query.where(ParkedTask.task_id == task_id)
    return list(db.scalars(query))


def mark_replayed(db: Session, parked_id: uuid.UUID, replay_task_id: str) -> None:
    db.execute(
        update(ParkedTask)
        .where(ParkedTask.id == parked_id, ParkedTask.replayed_at.is_(None))
        .values(replayed_at=func.now(), replay_task_id=replay_task_id)
    )
    db.commit()
