"""focus.update_profiles end to end through the broker and a real worker."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select, text, update

from focus_app.models import JobRun, JobRunUnit, User, UserFocusProfile
from focus_app.services.focus import flags, profile_job, profiles
from focus_app.services.jobkit import keys
from tests.conftest import celery_call
from tests.integration.conftest import wait_for
from tests.integration.factories import make_session, make_user

pytestmark = pytest.mark.usefixtures("worker")

DAY = datetime(2026, 1, 5, 9, tzinfo=UTC)


def run_job(celery_app, **kwargs) -> dict:
    return celery_app.send_task("focus.update_profiles", kwargs=kwargs).get(timeout=60)


def wait_for_run(db, run_id: str) -> JobRun:
    def finished():
        db.rollback()
        run = db.get(JobRun, run_id)
        return run if run is not None and run.finished_at is not None else None

    return wait_for(finished)


def user_with_sessions(db, user_id: str, count: int) -> str:
    make_user(db, user_id)
    for n in range(count):
        make_session(db, user_id, DAY + timedelta(days=n), 25 + n)
    return user_id


def test_sessions_over_http_become_a_profile_over_http(client, auth, celery_app, db):
    headers = auth("alice")
    for _ in range(3):
        started = client.post("/api/v1/focus-sessions/start", json={"expected_duration": 25}, headers=headers)
        assert started.status_code == 201
        ended = client.post(
            f"/api/v1/focus-sessions/{started.json['id']}/end",
            json={"was_completed": True, "focus_score": 4},
            headers=headers,
        )
        assert ended.status_code == 200
    assert client.get("/api/v1/focus-sessions/profile", headers=headers).json["status"] == "pending"

    summary = run_job(celery_app)
    run = wait_for_run(db, summary["run_id"])

    assert (run.status, run.succeeded, run.failed) == ("success", 1, 0)
    body = client.get("/api/v1/focus-sessions/profile", headers=headers).json
    assert body["status"] == "ready"
    assert body["profile"]["total_sessions_count"] == 3
    assert body["profile"]["completed_sessions_count"] == 3
    assert body["profile"]["avg_completion_ratio"] == 1.0


def test_flags_and_database_rule_both_find_users_and_flags_are_cleared(celery_app, db, redis_conn):
    flagged = user_with_sessions(db, "flagged", 3)
    db.execute(update(User).where(User.id == flagged).values(profiled_version=User.sessions_version))
    db.commit()
    redis_conn.set(keys.update_flag(flagged), 3)
    from_database = user_with_sessions(db, "unflagged", 4)
    too_few = user_with_sessions(db, "newcomer", 2)

    summary = run_job(celery_app)
    run = wait_for_run(db, summary["run_id"])

    assert summary["users"] == 3
    assert (run.succeeded, run.skipped, run.failed) == (2, 1, 0)
    computed = set(db.scalars(select(UserFocusProfile.user_id)))
    assert computed == {flagged, from_database}
    assert too_few not in computed
    assert list(redis_conn.scan_iter(match=f"{keys.UPDATE_FLAG_PREFIX}*")) == []
    # Processed users, skipped ones included, are not rediscovered until their sessions change.
    assert profile_job.discover_users(db, redis_conn)[0] == []


def test_a_session_ending_during_computation_keeps_its_flag(client, auth, db, redis_conn, celery_app):
    headers = auth("racer")
    for _ in range(3):
        sid = client.post("/api/v1/focus-sessions/start", json={}, headers=headers).json["id"]
        client.post(f"/api/v1/focus-sessions/{sid}/end", json={"was_completed": True}, headers=headers)

    # The batch claims the flag, reads version 3 and commits its profile ...
    token = flags.claim_flags(redis_conn, ["racer"])
    profiles.compute_profiles(db, ["racer"], min_sessions=3)
    db.commit()
    # ... a fourth session ends before the batch clears its flags ...
    sid = client.post("/api/v1/focus-sessions/start", json={}, headers=headers).json["id"]
    client.post(f"/api/v1/focus-sessions/{sid}/end", json={"was_completed": False}, headers=headers)
    flags.clear_flags_and_cache(redis_conn, ["racer"], token)

    # ... so the newer flag survives and the next run counts the fourth session.
    assert redis_conn.get(keys.update_flag("racer")) == b"4"
    run = wait_for_run(db, run_job(celery_app)["run_id"])
    assert run.succeeded == 1
    profile = client.get("/api/v1/focus-sessions/profile", headers=headers).json["profile"]
    assert profile["total_sessions_count"] == 4
    assert profile["completed_sessions_count"] == 3
    assert redis_conn.get(keys.update_flag("racer")) is None


def test_a_flag_of_any_value_is_cleared_once_the_user_is_computed(celery_app, db, redis_conn):
    # Seed 000's other services flag with "1"; these users' sessions came from elsewhere (version 0,
    # nothing in PostgreSQL says they changed), so only the flag finds them.
    imported = [f"imported-{n:03}" for n in range(120)]
    for user_id in imported:
        make_user(db, user_id)
        for n in range(3):
            make_session(db, user_id, DAY + timedelta(days=n), 30, bump_version=False)
        redis_conn.set(keys.update_flag(user_id), "1", ex=86400)
    # Flags holding a version: the user's own, and one ahead of it (written by another service).
    own = user_with_sessions(db, "own-version", 3)
    ahead = user_with_sessions(db, "version-ahead", 3)
    db.execute(update(User).values(profiled_version=User.sessions_version))
    db.commit()
    redis_conn.set(keys.update_flag(own), "3", ex=86400)
    redis_conn.set(keys.update_flag(ahead), "99", ex=86400)

    summary = run_job(celery_app)
    run = wait_for_run(db, summary["run_id"])

    assert summary["users"] == 122 and summary["sources"]["database"] == 0
    assert (run.status, run.succeeded, run.failed) == ("success", 122, 0)
    assert db.scalar(text("SELECT count(*) FROM user_focus_profiles")) == 122
    assert list(redis_conn.scan_iter(match=keys.UPDATE_FLAG_PATTERN)) == []
    # Nothing is left to do: the next run finds nobody.
    assert profile_job.discover_users(db, redis_conn)[0] == []


def test_a_flag_raised_while_its_batch_computes_survives_for_the_next_run(app, celery_app, db, redis_conn):
    user = user_with_sessions(db, "busy", 3)
    wait_for_run(db, run_job(celery_app, user_ids=[user])["run_id"])
    flag = keys.update_flag(user)
    redis_conn.set(flag, "1", ex=86400)
    # Hold the user's profile row: the batch claims the flag, then waits in its upsert.
    blocker = app.extensions["db"].engine.connect()
    transaction = blocker.begin()
    blocker.execute(text("SELECT 1 FROM user_focus_profiles WHERE user_id = :u FOR UPDATE"), {"u": user})
    try:
        summary = run_job(celery_app)
        wait_for(lambda: (redis_conn.get(flag) or b"").startswith(b"claimed:"))
        # Raised during the computation, seed-style (any value means "needs an update").
        redis_conn.set(flag, "1", ex=86400)
    finally:
        transaction.rollback()
        blocker.close()
    run = wait_for_run(db, summary["run_id"])

    assert (run.status, run.succeeded) == ("success", 1)
    assert redis_conn.get(flag) == b"1"
    # The next run computes the user again and clears the flag.
    assert run_job(celery_app)["users"] == 1
    wait_for(lambda: redis_conn.get(flag) is None)


def test_running_twice_gives_the_same_rows(celery_app, db):
    for n in range(5):
        user_with_sessions(db, f"user-{n}", 3 + n)
    wait_for_run(db, run_job(celery_app)["run_id"])
    first = db.execute(
        text(
            "SELECT user_id, avg_focus_duration_minutes, peak_focus_hours, focus_by_hour, "
            "source_version FROM user_focus_profiles ORDER BY user_id"
        )
    ).all()

    wait_for_run(db, run_job(celery_app, user_ids=[f"user-{n}" for n in range(5)])["run_id"])
    second = db.execute(
        text(
            "SELECT user_id, avg_focus_duration_minutes, peak_focus_hours, focus_by_hour, "
            "source_version FROM user_focus_profiles ORDER BY user_id"
        )
    ).all()

    assert len(first) == 5
    assert first == second


def test_a_redelivered_batch_is_counted_once(celery_app, db):
    user_with_sessions(db, "dup", 3)
    summary = run_job(celery_app, user_ids=["dup"])
    run = wait_for_run(db, summary["run_id"])

    again = celery_app.send_task(
        "focus.compute_profiles", args=[["dup"]], kwargs={"run_id": summary["run_id"], "unit_no": 0}
    ).get(timeout=30)

    assert again["status"] == "duplicate"
    db.refresh(run)
    assert (run.units_done, run.succeeded) == (1, 1)


def test_a_beat_slot_runs_once(celery_app, db):
    first = run_job(celery_app, trigger="beat")
    second = run_job(celery_app, trigger="beat")

    assert first["status"] == "started"
    assert second["status"] == "skipped"
    assert db.scalar(text("SELECT count(*) FROM job_runs WHERE trigger = 'beat'")) == 1


def test_a_lost_batch_message_is_published_again(celery_app, db):
    user_with_sessions(db, "lost", 3)
    # A run whose unit was written but whose message never reached the broker (nor any worker).
    run_id = db.execute(
        text(
            "INSERT INTO job_runs (job_name, trigger, units_total) "
            "VALUES ('focus.update_profiles', 'manual', 1) RETURNING id"
        )
    ).scalar_one()
    db.execute(
        text(
            "INSERT INTO job_run_units (run_id, unit_no, payload, created_at) "
            "VALUES (:r, 0, '[\"lost\"]', now() - interval '1 hour')"
        ),
        {"r": run_id},
    )
    db.commit()

    summary = celery_app.send_task("ops.republish_lost_units").get(timeout=60)

    assert (summary["lost"], summary["republished"]) == (1, 1)
    lost_run = wait_for_run(db, run_id)
    assert (lost_run.status, lost_run.succeeded) == ("success", 1)
    assert db.scalar(select(UserFocusProfile.user_id)) == "lost"


def test_redis_down_the_job_still_runs_from_postgresql(db, caplog):
    user_with_sessions(db, "resilient", 3)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)

    with caplog.at_level(logging.WARNING, logger="focus_profile_update"):
        plan = profile_job.plan_update(db, dead, trigger="manual", task_id=None, batch_size=10)
    (unit,) = plan.units
    result = profile_job.compute_batch(db, dead, unit.payload, min_sessions=3, unit=unit)

    assert plan.summary["sources"]["redis"] == "unavailable"
    assert "redis unavailable" in caplog.text
    assert result == {"status": "done", "computed": 1, "skipped": 0}
    assert db.get(JobRun, unit.run_id).status == "success"


def test_bad_arguments_fail_the_task_with_a_reason_and_the_worker_lives_on(celery_app, db):
    bad_calls = [
        ("focus.compute_profiles", ["not-a-list"], {}),
        ("focus.compute_profiles", [[1, 2]], {}),
        ("focus.compute_profiles", [["u"]], {"run_id": "nope", "unit_no": 0}),
        ("focus.compute_profiles", [["u"]], {"run_id": "7b0c1c55-4a43-4f5e-9a0b-1c2d3e4f5a6b"}),
        ("focus.update_profiles", [], {"trigger": "sometimes"}),
        ("focus.update_profiles", [], {"user_ids": "alice"}),
    ]
    for name, args, kwargs in bad_calls:
        result = celery_app.send_task(name, args=args, kwargs=kwargs)
        with pytest.raises(Exception) as failure:
            result.get(timeout=30)
        assert result.state == "FAILURE"
        assert "must" in str(failure.value) or "go together" in str(failure.value)

    user_with_sessions(db, "after", 3)
    assert wait_for_run(db, run_job(celery_app, user_ids=["after"])["run_id"]).succeeded == 1


@pytest.mark.slow
def test_celery_call_from_the_command_line(celery_app, db, test_settings):
    user_with_sessions(db, "cli-user", 3)
    task_id = celery_call(test_settings, "focus.update_profiles", '{"user_ids": ["cli-user"]}')

    assert celery_app.AsyncResult(task_id).get(timeout=60)["users"] == 1
    wait_for(
        lambda: (
            db.rollback()
            or db.scalar(select(UserFocusProfile.user_id).where(UserFocusProfile.user_id == "cli-user"))
        )
    )


def test_no_unit_is_left_pending_after_a_run(celery_app, db):
    for n in range(120):
        user_with_sessions(db, f"bulk-{n:03}", 3) if n % 40 == 0 else make_user(db, f"bulk-{n:03}")
    summary = run_job(celery_app, user_ids=[f"bulk-{n:03}" for n in range(120)])
    run = wait_for_run(db, summary["run_id"])

    assert summary["batches"] == 3  # batch size 50 in the test settings
    assert (run.units_done, run.succeeded, run.skipped) == (3, 3, 117)
    assert db.scalar(select(JobRunUnit).where(JobRunUnit.status == "pending")) is None
