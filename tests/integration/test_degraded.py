"""What clients see when a store is down, and the job-status endpoint."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from focus_app import create_app
from focus_app.models import JobRun
from tests.conftest import TEST_ADMIN_KEY, make_settings
from tests.integration.conftest import wait_for
from tests.integration.factories import make_session, make_user
from workers import publish

DEAD_DATABASE = "postgresql://postgres@127.0.0.1:1/nowhere"
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def app_without_database(app, redis_url):
    broken = create_app(make_settings(DEAD_DATABASE, redis_url))
    yield broken
    # Building an app makes its Celery app the process default; give it back to the test worker's.
    app.extensions["celery"].set_default()
    app.extensions["celery"].set_current()


@pytest.fixture
def app_without_redis(app, database_url):
    broken = create_app(make_settings(database_url, DEAD_REDIS))
    # Building an app makes its Celery app the process default: the test worker's tasks must run
    # in the working app (the broken one only answers requests and publishes).
    app.extensions["celery"].set_default()
    app.extensions["celery"].set_current()
    yield broken
    publish.resume()  # the pause is per process: the other tests' app publishes again


def test_after_a_failed_publish_the_process_does_not_try_again_for_a_while(app_without_redis, caplog):
    caplog.set_level(logging.INFO, logger="workers.publish")
    with app_without_redis.test_request_context():
        assert publish.publish("focus.update_profiles", owner="alice") is None
        assert publish.paused()
        assert publish.publish("focus.update_profiles", owner="alice") is None
    assert "no publishing for 5 s" in caplog.text
    assert "publishing paused after a broker failure" in caplog.text


@pytest.mark.usefixtures("worker")
def test_broker_down_the_admin_trigger_records_its_run_and_the_sweeper_publishes_it(
    app_without_redis, celery_app, db
):
    make_user(db, "late")
    client = app_without_redis.test_client()
    started = time.monotonic()
    body = {"user_ids": ["late"], "force_refresh": True}
    response = client.post(
        "/api/v1/admin/intelligence/trigger", json=body, headers={"X-API-Key": TEST_ADMIN_KEY}
    )
    assert response.status_code == 202 and time.monotonic() - started < 1
    task_id = response.json["task_id"]
    assert db.scalar(select(JobRun.status).where(JobRun.task_id == task_id)) == "pending"

    # Older than UNIT_REPUBLISH_AFTER_SECONDS: the sweeper publishes it under the same task id.
    db.execute(
        update(JobRun).where(JobRun.task_id == task_id).values(started_at=func.now() - timedelta(hours=1))
    )
    db.commit()
    swept = celery_app.send_task("ops.republish_lost_units").get(timeout=60)
    assert swept["requests_published"] == 1
    wait_for(
        lambda: (
            db.scalar(select(JobRun.status).where(JobRun.task_id == task_id)) == "success" or db.rollback()
        )
    )
    run = db.scalars(select(JobRun).where(JobRun.task_id == task_id)).one()
    assert (run.trigger, run.succeeded, run.result["users"]) == ("api", 1, 1)
    assert (
        db.scalar(select(func.count()).select_from(JobRun).where(JobRun.job_name == "intelligence.weekly"))
        == 1
    )


def test_postgresql_down_is_a_503_json_not_a_500(app_without_database, auth):
    client = app_without_database.test_client()

    response = client.get("/api/v1/focus-sessions/active", headers=auth("alice"))

    assert response.status_code == 503
    assert response.json == {
        "code": 503,
        "status": "Service Unavailable",
        "message": "database unavailable, try again shortly",
    }
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 503
    assert ready.json["checks"]["database"] == "unreachable"
    assert ready.json["checks"]["redis"] == "ok"


def test_a_connection_lost_after_the_last_query_leaves_the_teardown_quiet(app):
    """The request's session is removed in Flask's teardown: its rollback on a connection that
    died (pg_terminate_backend here) must not raise there, and the pool replaces the connection."""
    database = app.extensions["db"]
    with app.app_context():
        pid = database.session().execute(text("SELECT pg_backend_pid()")).scalar_one()
        with database.statements.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar_one()
    with app.app_context():
        assert database.session().execute(text("SELECT pg_backend_pid()")).scalar_one() != pid


@pytest.mark.usefixtures("worker")
def test_a_caller_polls_the_tasks_they_started_and_only_those(app, client, auth, db):
    make_user(db, "poller")
    for day in range(3):
        make_session(db, "poller", datetime(2026, 1, 5 + day, 9, tzinfo=UTC), 25)
    with app.test_request_context():
        task_id = publish.publish("focus.update_profiles", kwargs={"user_ids": ["poller"]}, owner="poller")

    def state():
        body = client.get(f"/api/v1/jobs/{task_id}", headers=auth("poller")).json
        return body if body["state"] == "SUCCESS" else None

    body = wait_for(state)
    assert body["name"] == "focus.update_profiles"
    assert body["result"]["users"] == 1
    assert client.get(f"/api/v1/jobs/{task_id}", headers=auth("someone-else")).status_code == 404
    admin = client.get(f"/api/v1/jobs/{task_id}", headers={"X-API-Key": TEST_ADMIN_KEY})
    assert admin.json["state"] == "SUCCESS"
