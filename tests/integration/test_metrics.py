"""GET /metrics: figures read from the real broker lists, job tables and Redis at scrape time."""

from __future__ import annotations

import time

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert

from focus_app.models import JobRun
from focus_app.models.analysis import AnalysisJob
from focus_app.models.intelligence import JobRetryQueue
from focus_app.services.ops import metrics
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.conftest import wait_for
from tests.integration.factories import make_user
from workers.celery_app import broker_layout

PROBE_QUEUE = "observe-probe"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_KEY}"}


def scrape(client, headers=None) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=headers or ADMIN)
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_need_the_admin_key(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"X-API-Key": TEST_ADMIN_KEY}).status_code == 200
    assert client.get("/metrics", headers=ADMIN).status_code == 200


@pytest.fixture
def probe_queue(redis_conn):
    yield PROBE_QUEUE
    redis_conn.delete(*broker_layout([PROBE_QUEUE]).queue_lists[PROBE_QUEUE])


def test_queue_depth_counts_every_priority_list_and_age_comes_from_the_publish_stamp(
    celery_app, redis_conn, probe_queue
):
    before = time.time()
    for priority in (0, 3, 6, 6):
        celery_app.send_task("analysis.run", args=["x"], queue=probe_queue, priority=priority)
    after = time.time()

    (state,) = metrics.queue_states(redis_conn, broker_layout([probe_queue]), now=after + 100).values()

    assert state.depth == 4
    assert after + 100 - after <= state.oldest_age_seconds <= after + 100 - before
    empty = metrics.queue_states(redis_conn, broker_layout(["observe-empty"]), now=after)["observe-empty"]
    assert (empty.depth, empty.oldest_age_seconds) == (0, 0.0)


def test_every_queue_is_reported(client):
    samples = scrape(client)

    for queue in ("profiles", "analysis", "maintenance", "intelligence", "default"):
        assert samples[("focus_queue_messages", (("queue", queue),))] == 0
        assert samples[("focus_queue_oldest_message_age_seconds", (("queue", queue),))] == 0
    assert samples[("focus_broker_unacked_messages", ())] >= 0
    for source in ("broker", "redis", "postgresql"):
        assert samples[("focus_metrics_source_up", (("source", source),))] == 1


def test_job_runs_retry_queue_and_dead_letters(client, db):
    make_user(db, "m1")
    db.execute(
        insert(JobRun),
        [
            {"job_name": "focus.update_profiles", "trigger": "beat", "status": "success"},
            {"job_name": "focus.update_profiles", "trigger": "beat", "status": "success"},
            {"job_name": "focus.update_profiles", "trigger": "beat", "status": "failed"},
            {"job_name": "intelligence.weekly", "trigger": "beat", "status": "running"},
        ],
    )
    finished = db.execute(
        insert(JobRun)
        .values(job_name="intelligence.weekly", trigger="manual", status="success", finished_at=func.now())
        .returning(JobRun.finished_at)
    ).scalar_one()
    db.execute(
        insert(JobRetryQueue),
        [
            {
                "job_name": "intelligence.weekly",
                "user_id": f"u{n}",
                "week_of": "2026-01-05",
                "status": status,
                "next_retry_at": finished,
            }
            for n, status in enumerate(["pending", "pending", "exhausted"])
        ],
    )
    db.execute(
        insert(AnalysisJob),
        [
            {
                "user_id": "m1",
                "context_type": f"c{n}",
                "priority": "low",
                "source": "chat",
                "status": "failed",
                "archived_at": finished if n == 0 else None,
            }
            for n in range(3)
        ],
    )
    db.commit()

    samples = scrape(client)

    runs = {k[1]: v for k, v in samples.items() if k[0] == "focus_job_runs_total"}
    assert runs[(("job", "focus.update_profiles"), ("status", "success"))] == 2
    assert runs[(("job", "focus.update_profiles"), ("status", "failed"))] == 1
    assert runs[(("job", "intelligence.weekly"), ("status", "running"))] == 1
    last = samples[("focus_job_last_success_timestamp_seconds", (("job", "intelligence.weekly"),))]
    assert last == pytest.approx(finished.timestamp())
    # Successful runs without a finish time say nothing about when they finished.
    assert ("focus_job_last_success_timestamp_seconds", (("job", "focus.update_profiles"),)) not in samples
    retry = {k[1]: v for k, v in samples.items() if k[0] == "focus_retry_queue_entries"}
    assert retry == {
        (("job", "intelligence.weekly"), ("status", "exhausted")): 1,
        (("job", "intelligence.weekly"), ("status", "pending")): 2,
    }
    assert samples[("focus_dead_letters", ())] == 2


@pytest.mark.usefixtures("worker")
def test_last_success_of_a_periodic_task(client, celery_app):
    before = time.time()
    celery_app.send_task("analysis.requeue_stale").get(timeout=30)
    key = ("focus_periodic_task_last_success_timestamp_seconds", (("task", "analysis.requeue_stale"),))

    # Celery stores the result before it sends task_success, so the sample may lag the result.
    samples = wait_for(lambda: (found := scrape(client)) and key in found and found)

    assert before <= samples[key] <= time.time()


def test_a_store_that_is_down_is_reported_and_the_rest_still_served(app, client, monkeypatch):
    monkeypatch.setitem(app.extensions, "redis", redis.Redis(port=1, socket_connect_timeout=0.2))

    samples = scrape(client)

    assert samples[("focus_metrics_source_up", (("source", "redis"),))] == 0
    assert samples[("focus_metrics_source_up", (("source", "broker"),))] == 0
    assert samples[("focus_metrics_source_up", (("source", "postgresql"),))] == 1
    assert samples[("focus_dead_letters", ())] == 0
    assert not any(name == "focus_queue_messages" for name, _ in samples)
