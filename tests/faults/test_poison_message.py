"""A task that kills its own worker on every delivery is parked after N deliveries, then replayed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from focus_app.models.ops import ParkedTask
from tests.faults.harness import wait_for
from tests.faults.poison_tasks import CURED_KEY

pytestmark = pytest.mark.faults

MAX_DELIVERIES = 3
KILLED = "Task handler raised error: WorkerLostError"


def _parked(stack):
    db = stack.db()
    db.rollback()
    return db.scalars(select(ParkedTask)).all()


def test_a_poison_message_is_parked_after_n_deliveries_and_can_be_replayed(faults):
    worker = faults.worker(
        "poison",
        "default",
        "-I",
        "tests.faults.poison_tasks",
        concurrency=1,
        TASK_MAX_DELIVERIES=str(MAX_DELIVERIES),
    )
    wait_for(lambda: "ready." in worker.output(), 60, what="worker ready")

    task_id = faults.send("faultsuite.kill_own_worker", "m1")

    parked = wait_for(lambda: _parked(faults), 90, what="message parked")
    assert len(parked) == 1
    row = parked[0]
    assert (row.task_id, row.task_name, row.args, row.queue) == (
        task_id,
        "faultsuite.kill_own_worker",
        ["m1"],
        "default",
    )
    assert row.deliveries == MAX_DELIVERIES + 1
    assert row.replayed_at is None
    # It killed its pool process exactly N times, then stopped looping; the worker lives on.
    assert worker.output().count(KILLED) == MAX_DELIVERIES
    assert worker.alive()
    client = faults.redis_client
    wait_for(lambda: client.llen("default") == 0 and client.hlen("unacked") == 0, 10, what="message gone")
    assert not client.exists("focus:faultsuite:ran:m1")

    # The operator fixes the cause and replays it: it runs once, under a new task id.
    client.set(CURED_KEY, 1, ex=600)
    faults.send("ops.replay_parked")
    ran_as = wait_for(lambda: client.get("focus:faultsuite:ran:m1"), 30, what="replayed task ran")
    replayed = wait_for(lambda: _parked(faults)[0].replayed_at and _parked(faults)[0], 10)
    assert ran_as.decode() == replayed.replay_task_id != task_id
    assert worker.output().count(KILLED) == MAX_DELIVERIES
