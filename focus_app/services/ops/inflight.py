"""Run units whose message is gone: the one rule that recovers them, for every fan-out job.

A unit stays `pending` in PostgreSQL until the transaction that does its work claims it, and every
message of a unit carries the unit's own task id (`fanout.task_id`). So a pending unit's message is
either waiting in a broker queue, held by a live worker (running, prefetched, or counting down to a
retry), or gone: lost with a Redis restart or flush, or held by a worker that was SIGKILLed (Redis
would give it back only one visibility timeout later). The sweeper publishes the gone ones again,
under the same task id: a second delivery of a unit is refused by its claim, and the delivery limit
still counts every delivery of it (a unit that kills its worker each time is parked, not looped).

Never republished: units of a cancelled run, units younger than the grace period (their planner may
still be publishing them), units whose message was parked as poison (an operator replays those).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from focus_app.models import JobRun, JobRunUnit
from focus_app.models.ops import ParkedTask
from focus_app.services.jobkit import fanout

log = logging.getLogger("inflight")


@dataclass(frozen=True)
class PendingUnit:
    job_name: str
    unit: fanout.Unit
    run_task_id: str | None  # the task that planned the run: it may be working the unit itself

    @property
    def task_id(self) -> str:
        return fanout.task_id(self.unit)


def pending_units(db: Session, job_names: Iterable[str], older_than_seconds: int) -> list[PendingUnit]:
    """Pending units of the jobs' runs that are not cancelled, written more than the grace period
    ago, whose message was not parked; oldest first."""
    rows = db.execute(
        select(JobRun.job_name, JobRun.task_id, JobRunUnit.run_id, JobRunUnit.unit_no, JobRunUnit.payload)
        .join(JobRun, JobRun.id == JobRunUnit.run_id)
        .where(
            JobRun.job_name.in_(list(job_names)),
            JobRun.status != "cancelled",
            JobRunUnit.status == "pending",
            JobRunUnit.created_at < func.now() - timedelta(seconds=older_than_seconds),
        )
        .order_by(JobRunUnit.created_at, JobRunUnit.unit_no)
    ).all()
    units = [
        PendingUnit(row.job_name, fanout.Unit(row.run_id, row.unit_no, row.payload), row.task_id)
        for row in rows
    ]
    if units:
        parked = set(
            db.scalars(select(ParkedTask.task_id).where(ParkedTask.task_id.in_([u.task_id for u in units])))
        )
        units = [u for u in units if u.task_id not in parked]
    db.rollback()
    return units


def waiting_task_ids(broker: redis.Redis, queue_lists: Iterable[str]) -> set[str]:
    """Task ids of the messages waiting in these broker lists (kombu's Redis transport keeps each
    message as JSON with its task id in the headers)."""
    pipe = broker.pipeline(transaction=False)
    for name in queue_lists:
        pipe.lrange(name, 0, -1)
    found = set()
    for messages in pipe.execute():
        for raw in messages:
            try:
                found.add(json.loads(raw)["headers"]["id"])
            except (ValueError, KeyError, TypeError):
                continue  # not a task message of ours: it cannot be a unit's
    return found


# Task ids (asked for) that live workers hold now: running, prefetched or waiting for a retry.
HeldByWorkers = Callable[[list[str]], set[str]]


def unseen(task_ids: set[str], waiting: Callable[[], set[str]], held: HeldByWorkers) -> set[str]:
    """Those task ids whose message is neither waiting in the broker nor held by a live worker.

    Looked up queue, workers, queue again: a message moves from the queue to a worker (delivery) or
    from a worker to the queue (a retry), and either move between two looks is seen by the other.
    """
    if not task_ids:
        return set()
    seen = waiting()
    seen |= held(sorted(task_ids - seen))
    seen |= waiting()
    return task_ids - seen


def lookup_ids(units: list[PendingUnit]) -> set[str]:
    """The task ids that tell whether the units' messages are alive: each unit's own, and the task
    that planned its run (a weekly run or a consolidation started alone works its units itself)."""
    return {unit.task_id for unit in units} | {unit.run_task_id for unit in units if unit.run_task_id}


def lost_units(units: list[PendingUnit], unseen_ids: set[str]) -> list[PendingUnit]:
    """The units whose message is gone: unseen, and not held through the task that planned them."""
    lost = [
        unit
        for unit in units
        if unit.task_id in unseen_ids and (unit.run_task_id is None or unit.run_task_id in unseen_ids)
    ]
    if lost:
        log.warning(
            "republishing %d run units whose message is gone: %s",
            len(lost),
            ", ".join(f"{u.job_name} {u.unit.run_id}/{u.unit.unit_no}" for u in lost[:20]),
        )
    return lost


def still_pending(db: Session, units: list[PendingUnit]) -> list[PendingUnit]:
    """Those of the units that no delivery has taken meanwhile (and whose run was not cancelled)."""
    if not units:
        return []
    keys = [(unit.unit.run_id, unit.unit.unit_no) for unit in units]
    rows = db.execute(
        select(JobRunUnit.run_id, JobRunUnit.unit_no)
        .join(JobRun, JobRun.id == JobRunUnit.run_id)
        .where(
            JobRun.status != "cancelled",
            JobRunUnit.status == "pending",
            tuple_(JobRunUnit.run_id, JobRunUnit.unit_no).in_(keys),
        )
    ).all()
    db.rollback()
    pending = {(row.run_id, row.unit_no) for row in rows}
    return [unit for unit in units if (unit.unit.run_id, unit.unit.unit_no) in pending]
