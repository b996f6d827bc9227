"""A worker killed with SIGKILL in the middle of a task: after a new worker starts, every unit of
work completes exactly once in effect.

"In the middle" is made certain: the test holds an EXCLUSIVE lock on the table the task writes
(reads still pass), waits until the task's backend is queued on that lock, then SIGKILLs the worker's
main process and its pool children at once, so nothing is acknowledged or cleaned up. The broker
hands the unacknowledged messages out again one visibility timeout later (shortened here).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from focus_app.models import JobRun, JobRunUnit, UserFocusProfile
from focus_app.models.analysis import AnalysisJob, ProfileInterpretation
from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.intelligence.weeks import week_just_ended
from tests.faults.harness import figure, wait_for
from tests.integration.factories import make_session, make_user

pytestmark = pytest.mark.faults

VISIBILITY_TIMEOUT = 6
SHORT_LIMITS = {
    "TASK_SOFT_TIME_LIMIT_SECONDS": "4",
    "TASK_TIME_LIMIT_SECONDS": "5",
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT),
}


@contextmanager
def table_held(stack, table: str):
    """Hold an EXCLUSIVE lock: writers to `table` wait, readers pass."""
    connection = stack.app.extensions["db"].engine.connect()
    transaction = connection.begin()
    connection.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
    try:
        yield
    finally:
        transaction.rollback()
        connection.close()


def waiting_on(stack, table: str) -> int:
    with stack.app.extensions["db"].engine.connect() as connection:
        return connection.scalar(
            text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = CAST(:t AS regclass)"),
            {"t": table},
        )


def kill_mid_task(stack, worker, table: str) -> float:
    """SIGKILL the worker once a task waits on the held table; returns the kill's time."""
    wait_for(lambda: waiting_on(stack, table), 60, what=f"a task writing {table}")
    worker.kill()
    return time.monotonic()


def replacement_worker(stack, name: str, queues: str, killed_at: float, **env: str):
    # Started once the visibility timeout has passed, so it restores the dead worker's messages
    # on start-up (later ones come back within its 10 s restore scan).
    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT + 0.5 - time.monotonic()))
    return stack.worker(name, queues, **SHORT_LIMITS, **env)


def fresh(stack):
    db = stack.db()
    db.rollback()
    return db


def _users_with_sessions(db, count: int, start: datetime) -> list[str]:
    users = [make_user(db, f"user-{n}") for n in range(count)]
    for user in users:
        for day in range(3):
            make_session(db, user, start + timedelta(days=day, hours=9), 25, score=4)
    return users


def test_focus_update_profiles_killed_mid_batch(faults):
    db = faults.db()
    users = _users_with_sessions(db, 6, datetime.now(UTC) - timedelta(days=4))
    env = {**SHORT_LIMITS, "PROFILE_BATCH_SIZE": "2"}
    first = faults.worker("profiles-a", "profiles", **env)

    with table_held(faults, "user_focus_profiles"):
        faults.send("focus.update_profiles", user_ids=users)
        killed_at = kill_mid_task(faults, first, "user_focus_profiles")
        run = fresh(faults).scalars(select(JobRun)).one()
        assert fresh(faults).scalar(select(func.count()).select_from(UserFocusProfile)) == 0
    replacement_worker(faults, "profiles-b", "profiles", killed_at, PROFILE_BATCH_SIZE="2")

    wait_for(lambda: fresh(faults).get(JobRun, run.id).status == "success", 60, what="run finished")
    figure("SIGKILL mid focus.compute_profiles: kill to run complete", time.monotonic() - killed_at)
    db = fresh(faults)
    run = db.get(JobRun, run.id)
    assert (run.units_total, run.units_done, run.succeeded, run.failed) == (3, 3, 6, 0)
    assert db.scalar(select(func.count()).select_from(JobRun)) == 1
    assert db.scalars(select(JobRunUnit.status)).all() == ["done"] * 3
    profiles = db.scalars(select(UserFocusProfile.user_id)).all()
    assert sorted(profiles) == users


def test_analysis_run_killed_mid_job(faults, auth_headers):
    client = faults.app.test_client()
    for n in range(10):
        response = client.post(
            "/api/v1/chat/messages",
            json={"context_type": "study", "content": f"I really enjoy biology revision, note {n}"},
            headers=auth_headers("chatty"),
        )
        assert response.status_code == 201
    job = fresh(faults).scalars(select(AnalysisJob)).one()
    first = faults.worker("analysis-a", "analysis")

    with table_held(faults, "profile_interpretations"):
        killed_at = kill_mid_task(faults, first, "profile_interpretations")
        assert fresh(faults).get(AnalysisJob, job.id).status == "processing"
    sweeper = {"ANALYSIS_STUCK_AFTER_SECONDS": "2", "ANALYSIS_SWEEP_INTERVAL_SECONDS": "2"}
    replacement_worker(faults, "analysis-b", "analysis", killed_at, **sweeper)
    faults.beat("beat-analysis", **SHORT_LIMITS, **sweeper)

    # The redelivered message finds the job taken; the sweeper returns it to pending and publishes it.
    wait_for(lambda: fresh(faults).get(AnalysisJob, job.id).status == "completed", 60, what="job done")
    figure("SIGKILL mid analysis.run: kill to job completed", time.monotonic() - killed_at)
    db = fresh(faults)
    done = db.get(AnalysisJob, job.id)
    assert (done.outcome, done.attempts) == ("analysed", 2)
    assert db.scalar(select(func.count()).select_from(AnalysisJob)) == 1
    assert db.scalar(select(func.count()).select_from(ProfileInterpretation)) == 1
    assert (
        db.scalar(select(func.count()).select_from(AnalysisJob).where(AnalysisJob.status == "processing"))
        == 0
    )


def test_intelligence_generate_killed_mid_batch(faults):
    db = faults.db()
    week_of = week_just_ended(datetime.now(UTC), "UTC")
    users = _users_with_sessions(db, 6, datetime.combine(week_of, datetime.min.time(), UTC))
    env = {**SHORT_LIMITS, "INTELLIGENCE_BATCH_SIZE": "2"}
    first = faults.worker("intelligence-a", "intelligence", **env)

    with table_held(faults, "weekly_briefs"):
        faults.send("intelligence.weekly", week_of=week_of.isoformat())
        killed_at = kill_mid_task(faults, first, "weekly_briefs")
        run = fresh(faults).scalars(select(JobRun)).one()
    replacement_worker(faults, "intelligence-b", "intelligence", killed_at, INTELLIGENCE_BATCH_SIZE="2")

    wait_for(lambda: fresh(faults).get(JobRun, run.id).finished_at, 60, what="weekly run finished")
    figure("SIGKILL mid intelligence.generate: kill to run complete", time.monotonic() - killed_at)
    db = fresh(faults)
    run = db.get(JobRun, run.id)
    assert (run.status, run.units_total, run.units_done, run.succeeded, run.failed) == ("success", 3, 3, 6, 0)
    assert db.scalar(select(func.count()).select_from(JobRun)) == 1
    assert db.scalars(select(JobRunUnit.status)).all() == ["done"] * 3
    briefs = db.execute(select(WeeklyBrief.user_id, WeeklyBrief.week_of)).all()
    assert sorted(briefs) == [(user, week_of) for user in users]


def _attributes(client, headers) -> list[tuple[str, str, str]]:
    items = client.get("/api/v1/profile/attributes?page_size=100", headers=headers).json["items"]
    return sorted((item["category"], item["key"], item["value"]) for item in items)


def test_maintenance_consolidate_profile_killed_mid_entity(faults, auth_headers):
    client = faults.app.test_client()
    users = [f"keeper-{n}" for n in range(4)]
    expected = {}
    for user in users:
        headers = auth_headers(user)
        for key, value, confidence in (
            ("favourite subject", "Biology", 0.9),
            ("Favourite Subject", "biology", 0.6),
            ("study time", "mornings", 0.8),
            ("lucky number", "7", 0.05),
        ):
            body = {"category": "preference", "key": key, "value": value, "confidence": confidence}
            assert client.post("/api/v1/profile/attributes", json=body, headers=headers).status_code == 201
        plan = client.post("/api/v1/profile/attributes/consolidate", json={"dry_run": True}, headers=headers)
        expected[user] = sorted((a["category"], a["key"], a["value"]) for a in plan.json["after"])
        assert plan.json["changed"] and expected[user] != _attributes(client, headers)
    first = faults.worker("maintenance-a", "maintenance", **SHORT_LIMITS)

    with table_held(faults, "profile_entities"):
        faults.send("maintenance.consolidate_profiles")
        killed_at = kill_mid_task(faults, first, "profile_entities")
        run = fresh(faults).scalars(select(JobRun).where(JobRun.units_total > 0)).one()
    replacement_worker(faults, "maintenance-b", "maintenance", killed_at)

    wait_for(lambda: fresh(faults).get(JobRun, run.id).finished_at, 60, what="maintenance run finished")
    figure("SIGKILL mid maintenance.consolidate_profile: kill to run complete", time.monotonic() - killed_at)
    db = fresh(faults)
    run = db.get(JobRun, run.id)
    assert (run.status, run.units_total, run.units_done, run.failed) == ("success", 4, 4, 0)
    assert db.scalar(select(func.count()).select_from(JobRun)) == 1
    assert db.scalars(select(JobRunUnit.status)).all() == ["done"] * 4
    for user in users:
        assert _attributes(client, auth_headers(user)) == expected[user]
