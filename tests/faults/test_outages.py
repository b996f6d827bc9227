"""Redis and PostgreSQL each stopped for OUTAGE_SECONDS under a running worker and beat.

Nothing is restarted but the stopped server: the API keeps answering (JSON, 503 where the store is
truly needed), the worker and beat reconnect by themselves, and every write made during the outage
ends in its profile update and analysis.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from focus_app.models import JobRun, UserFocusProfile
from focus_app.models.analysis import AnalysisJob, ProfileInterpretation
from tests.conftest import TEST_ADMIN_KEY
from tests.faults.harness import figure, wait_for
from tests.integration.factories import make_session, make_user
from workers import publish

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 30
USERS = [f"writer-{n}" for n in range(4)]
FAST_BEAT = {
    "PROFILE_UPDATE_INTERVAL_SECONDS": "3",
    "ANALYSIS_SWEEP_INTERVAL_SECONDS": "2",
    "ANALYSIS_REPUBLISH_AFTER_SECONDS": "2",
}


def fresh(stack):
    db = stack.db()
    db.rollback()
    return db


def _ready(worker) -> None:
    wait_for(lambda: "ready." in worker.output(), 60, what="worker ready")


def _write_during_outage(client, auth_headers, user: str) -> None:
    headers = auth_headers(user)
    started = client.post("/api/v1/focus-sessions/start", json={"expected_duration": 25}, headers=headers)
    assert started.status_code == 201, started.json
    ended = client.post(
        f"/api/v1/focus-sessions/{started.json['id']}/end", json={"was_completed": True}, headers=headers
    )
    assert ended.status_code == 200, ended.json
    for n in range(10):
        posted = client.post(
            "/api/v1/chat/messages",
            json={"context_type": "study", "content": f"revision went well today, I like chemistry {n}"},
            headers=headers,
        )
        assert posted.status_code == 201, posted.json


def test_redis_stopped_while_the_api_takes_writes(faults, auth_headers):
    db = faults.db()
    for user in USERS:
        make_user(db, user)
        for day in range(2):
            make_session(db, user, datetime.now(UTC) - timedelta(days=day + 1), 25)
    worker = faults.worker("outage-redis", "profiles,analysis", **FAST_BEAT)
    faults.beat("beat-outage-redis", **FAST_BEAT)
    _ready(worker)
    client = faults.app.test_client()

    faults.redis.stop()
    stopped_at = time.monotonic()
    for n, user in enumerate(USERS):
        # Writes spread over the outage.
        time.sleep(max(0.0, stopped_at + n * OUTAGE_SECONDS / len(USERS) - time.monotonic()))
        _write_during_outage(client, auth_headers, user)
    job_state = client.get("/api/v1/jobs/some-task-id", headers={"X-API-Key": TEST_ADMIN_KEY})
    assert job_state.status_code == 503
    assert job_state.json["message"] == "redis unavailable, try again shortly"
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 503 and ready.json["checks"]["redis"] == "unreachable"
    # PostgreSQL has every write and a pending job per user, whatever the broker did.
    assert fresh(faults).scalar(select(func.count()).select_from(AnalysisJob)) == len(USERS)
    time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS - time.monotonic()))
    faults.redis.start()
    restarted_at = time.monotonic()

    def all_done():
        db = fresh(faults)
        profiles = db.scalars(
            select(UserFocusProfile.user_id).where(UserFocusProfile.total_sessions_count == 3)
        ).all()
        analysed = db.scalar(
            select(func.count()).select_from(AnalysisJob).where(AnalysisJob.status == "completed")
        )
        return sorted(profiles) == USERS and analysed == len(USERS)

    wait_for(all_done, 90, interval=0.5, what="profiles and analyses after the outage")
    figure("redis outage: writes accepted during it", len(USERS) * 12, "requests")
    figure("redis outage: recovery after restart", time.monotonic() - restarted_at)
    db = fresh(faults)
    assert db.scalar(select(func.count()).select_from(ProfileInterpretation)) == len(USERS)
    # The API publishes again (its result-channel subscription reconnected by itself).
    with faults.app.test_request_context():
        task_id = publish.publish("focus.update_profiles", kwargs={"user_ids": USERS}, owner=USERS[0])
    assert task_id is not None
    polled = wait_for(
        lambda: (
            client.get(f"/api/v1/jobs/{task_id}", headers=auth_headers(USERS[0])).json["state"] == "SUCCESS"
        ),
        30,
        what="a task published after the outage",
    )
    assert polled
    assert worker.alive()
    assert "Connection to broker lost" in worker.output()


def test_postgresql_stopped_under_worker_and_beat(faults, auth_headers):
    db = faults.db()
    for user in USERS:
        make_user(db, user)
        for day in range(3):
            make_session(db, user, datetime.now(UTC) - timedelta(days=day + 1), 25)
    client = faults.app.test_client()

    faults.postgres.stop()
    stopped_at = time.monotonic()
    # Worker and beat start into the outage and are never restarted.
    worker = faults.worker("outage-pg", "profiles", **FAST_BEAT)
    faults.beat("beat-outage-pg", **FAST_BEAT)
    _ready(worker)
    faults.send("focus.update_profiles", user_ids=USERS)
    for path in ("/api/v1/focus-sessions/active", "/api/v1/focus-sessions/profile"):
        response = client.get(path, headers=auth_headers(USERS[0]))
        assert response.status_code == 503
        assert response.json["message"] == "database unavailable, try again shortly"
    started = client.post("/api/v1/focus-sessions/start", json={}, headers=auth_headers(USERS[0]))
    assert started.status_code == 503 and started.is_json
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 503 and ready.json["checks"]["database"] == "unreachable"
    time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS - time.monotonic()))
    retries = worker.output().count("Retry in")
    faults.postgres.start()
    restarted_at = time.monotonic()

    def recovered():
        db = fresh(faults)
        return sorted(db.scalars(select(UserFocusProfile.user_id)).all()) == USERS

    wait_for(recovered, 90, interval=0.5, what="profiles after the outage")
    figure("postgresql outage: task retries scheduled during it", retries, "retries")
    figure("postgresql outage: recovery after restart", time.monotonic() - restarted_at)
    assert retries >= 1, "tasks retried with backoff while PostgreSQL was down"
    assert client.get("/api/v1/focus-sessions/active", headers=auth_headers(USERS[0])).status_code == 200
    assert client.get("/api/v1/ready").status_code == 200
    wait_for(
        lambda: (
            fresh(faults).scalar(select(func.count()).select_from(JobRun).where(JobRun.status == "running"))
            == 0
        ),
        30,
        what="no run left running",
    )
    assert worker.alive()
