"""Delivery counting and parking on the in-process worker (the SIGKILL loop is in tests/faults)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from focus_app.models import JobRun
from focus_app.models.ops import ParkedTask
from focus_app.services.jobkit import keys
from focus_app.services.ops import parked
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.usefixtures("worker")


def test_each_attempt_of_a_message_has_its_own_delivery_count(redis_conn):
    assert [parked.count_delivery(redis_conn, "t-1", 0) for _ in range(3)] == [1, 2, 3]
    assert parked.count_delivery(redis_conn, "t-1", 1) == 1
    assert 0 < redis_conn.ttl(keys.deliveries("t-1", 0)) <= keys.DELIVERY_COUNT_TTL_SECONDS


def test_a_message_past_the_limit_is_parked_instead_of_run(app, celery_app, db, redis_conn):
    limit = app.extensions["settings"].task_max_deliveries
    task_id = str(uuid.uuid4())
    # As if its worker had died `limit` times while running it.
    redis_conn.set(keys.deliveries(task_id, 0), limit, ex=60)

    celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["alice"]}, task_id=task_id)

    row = wait_for(lambda: db.scalars(select(ParkedTask)).one_or_none() or db.rollback())
    assert (row.task_id, row.task_name, row.args, row.kwargs) == (
        task_id,
        "focus.update_profiles",
        [],
        {"user_ids": ["alice"]},
    )
    assert row.deliveries == limit + 1 and row.queue == "profiles" and row.replayed_at is None
    assert db.scalar(select(func.count()).select_from(JobRun)) == 0  # it did not run

    result = celery_app.send_task("ops.replay_parked", args=[task_id]).get(timeout=30)

    assert [item["task_id"] for item in result["replayed"]] == [task_id]
    new_id = result["replayed"][0]["replay_task_id"]
    wait_for(lambda: db.scalar(select(JobRun.task_id)) or db.rollback())
    db.rollback()
    assert db.scalar(select(JobRun.task_id)) == new_id
    assert db.get(ParkedTask, row.id).replay_task_id == new_id
    # A second replay finds nothing open.
    assert celery_app.send_task("ops.replay_parked").get(timeout=30) == {"replayed": []}


def test_replay_rejects_a_task_id_that_is_not_a_string(celery_app):
    result = celery_app.send_task("ops.replay_parked", args=[42])
    with pytest.raises(Exception, match="task_id must be a task id string, got 42"):
        result.get(timeout=30)
