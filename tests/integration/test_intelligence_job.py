"""Weekly intelligence end to end: broker, real worker, PostgreSQL, Redis, HTTP."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from focus_app.models import JobRun
from focus_app.models.intelligence import JobRetryQueue, UserPreference, WeeklyBrief
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.conftest import wait_for
from tests.integration.factories import make_session, make_user

pytestmark = pytest.mark.usefixtures("worker")

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
WEEK = "2026-01-05"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def run_weekly(celery_app, **kwargs) -> dict:
    return celery_app.send_task("intelligence.weekly", kwargs=kwargs).get(timeout=60)


def brief(client, auth, user_id: str, week: str = WEEK):
    return client.get(f"/api/v1/intelligence/briefs/{week}", headers=auth(user_id))


def test_brief_numbers_in_the_users_timezone(client, auth, celery_app, db):
    user = make_user(db, "nyc", "America/New_York")  # UTC-5 in January
    make_session(db, user, at("2026-01-05T04:30"), 20)  # Sun 23:30 local: the week before
    make_session(db, user, at("2026-01-05T05:30"), 30, score=4, interruptions=1)  # Mon 00:30
    make_session(db, user, at("2026-01-07T14:00"), 50, score=5)  # Wed 09:00
    make_session(db, user, at("2026-01-12T04:15"), 40, completed=False, score=2, interruptions=2)  # Sun 23:15
    make_session(db, user, at("2026-01-12T05:00"), 90)  # Mon 00:00 local: the next week
    make_session(db, user, at("2026-01-08T15:00"), None)  # never ended

    summary = run_weekly(celery_app, week_of=WEEK, user_ids=[user])

    assert (summary["status"], summary["users_successful"], summary["success_rate"]) == ("success", 1, 1.0)
    body = brief(client, auth, user).json
    stats = body["week_stats"]
    assert (stats["sessions"], stats["focus_minutes"], stats["completed"]) == (3, 120, 2)
    assert stats["completion_rate"] == 0.67
    assert stats["avg_focus_score"] == 3.67  # (4 + 5 + 2) / 3
    assert stats["interruptions"] == 3
    assert stats["by_day"]["Mon"] == {"sessions": 1, "minutes": 30}
    assert stats["by_day"]["Wed"] == {"sessions": 1, "minutes": 50}
    assert stats["by_day"]["Sun"] == {"sessions": 1, "minutes": 40}
    assert body["patterns"]["peak_hours"] == [9, 23, 0]  # one session each, ordered by minutes
    assert body["velocity"]["previous_week_minutes"] == 20
    assert body["velocity"]["focus_minutes_change_pct"] == 500
    assert [w["focus_minutes"] for w in body["velocity"]["trend"]] == [0, 0, 20, 120]
    assert body["main_story"].startswith(
        "In the week of January 5, 2026 you focused for 2 h across 3 sessions"
    )
    assert body["story_source"] == "deterministic"
    assert {"type", "metric", "message"} <= set(body["insights"][0])


def test_a_dst_week_is_167_hours_long(client, auth, celery_app, db):
    user = make_user(db, "berlin", "Europe/Berlin")  # clocks go forward on Sunday 2026-03-29
    make_session(db, user, at("2026-03-22T22:30"), 10)  # Sun 23:30 CET: the week before
    make_session(db, user, at("2026-03-22T23:30"), 25)  # Mon 00:30 CET
    make_session(db, user, at("2026-03-29T21:30"), 35)  # Sun 23:30 CEST: still this week
    make_session(db, user, at("2026-03-29T22:30"), 45)  # Mon 00:30 CEST: a 168 h window would take it

    run_weekly(celery_app, week_of="2026-03-23", user_ids=[user])

    stats = brief(client, auth, user, "2026-03-23").json["week_stats"]
    assert (stats["sessions"], stats["focus_minutes"]) == (2, 60)
    assert stats["by_day"]["Mon"]["minutes"] == 25
    assert stats["by_day"]["Sun"]["minutes"] == 35


def test_an_empty_week_gets_an_honest_brief(client, auth, celery_app, db):
    make_user(db, "idle")

    summary = run_weekly(celery_app, week_of=WEEK)

    assert (summary["users_processed"], summary["users_successful"]) == (1, 1)
    body = brief(client, auth, "idle").json
    assert body["week_stats"]["sessions"] == 0
    assert body["main_story"].startswith("No focus sessions were recorded in the week of January 5, 2026.")
    assert body["insights"][0]["metric"] == "activity"


def test_disabled_users_are_left_out_and_get_no_brief(client, auth, celery_app, db):
    make_user(db, "on")
    make_user(db, "off")
    db.add(UserPreference(user_id="off", intelligence_generation_enabled=False))
    db.commit()

    summary = run_weekly(celery_app, week_of=WEEK)

    assert summary["users_processed"] == 1
    assert brief(client, auth, "off").status_code == 404
    assert db.scalar(
        select(UserPreference.last_intelligence_generated_at).where(UserPreference.user_id == "on")
    )


def test_two_concurrent_triggers_run_the_week_once(client, celery_app, db):
    for n in range(60):
        make_user(db, f"u-{n:02}")

    first = client.post("/api/v1/admin/intelligence/trigger", json={"week_of": WEEK}, headers=ADMIN)
    second = client.post("/api/v1/admin/intelligence/trigger", json={"week_of": WEEK}, headers=ADMIN)
    results = [celery_app.AsyncResult(r.json["task_id"]).get(timeout=60) for r in (first, second)]

    assert (first.status_code, second.status_code) == (202, 202)
    assert sorted(r["status"] for r in results) == ["skipped", "success"]
    assert (
        db.scalar(select(func.count()).select_from(JobRun).where(JobRun.job_name == "intelligence.weekly"))
        == 1
    )
    assert db.scalar(select(func.count()).select_from(WeeklyBrief)) == 60

    # A forced re-run during or after the week rewrites briefs in place: still one per user.
    forced = run_weekly(celery_app, week_of=WEEK, force_refresh=True)
    assert forced["users_successful"] == 60
    assert db.scalar(select(func.count()).select_from(WeeklyBrief)) == 60


def test_partial_failure_goes_to_the_retry_queue_then_succeeds(client, auth, celery_app, db):
    for user_id in ("ok-1", "ok-2", "bad-1", "bad-2"):
        make_user(db, user_id)
    db.execute(text("UPDATE users SET timezone = 'Mars/Olympus' WHERE id LIKE 'bad-%'"))
    db.commit()

    summary = run_weekly(celery_app, week_of=WEEK)

    assert (summary["status"], summary["success_rate"], summary["queued_for_retry"]) == ("failed", 0.5, 2)
    assert summary["failed_users"] == ["bad-1", "bad-2"]
    run = db.get(JobRun, summary["run_id"])
    assert (run.succeeded, run.failed) == (2, 2) and "bad-1" in run.error
    queued = db.scalars(select(JobRetryQueue).order_by(JobRetryQueue.user_id)).all()
    assert [q.user_id for q in queued] == ["bad-1", "bad-2"]
    assert all("unknown timezone 'Mars/Olympus'" in q.last_error for q in queued)
    assert all(q.next_retry_at > datetime.now(UTC) + timedelta(hours=1) for q in queued)  # 2 h backoff

    # Not due yet: nothing happens.
    assert celery_app.send_task("intelligence.retry_failed").get(timeout=60)["due"] == 0

    db.execute(text("UPDATE users SET timezone = 'Asia/Tokyo' WHERE id LIKE 'bad-%'"))
    db.execute(update(JobRetryQueue).values(next_retry_at=func.now() - timedelta(seconds=1)))
    db.commit()
    retried = celery_app.send_task("intelligence.retry_failed").get(timeout=60)

    assert retried["recovered"] == ["bad-1", "bad-2"]
    assert db.scalar(select(func.count()).select_from(JobRetryQueue)) == 0
    assert brief(client, auth, "bad-2").status_code == 200


def test_retries_exhausted_record_an_admin_alert(celery_app, db, caplog):
    make_user(db, "doomed")
    db.execute(text("UPDATE users SET timezone = 'Nowhere/Land' WHERE id = 'doomed'"))
    db.commit()
    run_weekly(celery_app, week_of=WEEK)
    delays = []

    with caplog.at_level(logging.ERROR, logger="weekly_intelligence"):
        for _ in range(3):
            db.execute(update(JobRetryQueue).values(next_retry_at=func.now() - timedelta(seconds=1)))
            db.commit()
            result = celery_app.send_task("intelligence.retry_failed").get(timeout=60)
            entry = db.scalars(select(JobRetryQueue).execution_options(populate_existing=True)).one()
            delays.append((entry.next_retry_at - entry.updated_at).total_seconds())

    assert result["exhausted"] == ["doomed"]
    assert (entry.status, entry.retry_count) == ("exhausted", 3)
    assert round(delays[0]) == 2 * 7200 and round(delays[1]) == 3 * 7200  # backoff grows per attempt
    alert = db.scalars(
        select(JobRun).where(JobRun.job_name == "intelligence.retry_failed", JobRun.status == "failed")
    ).one()
    assert "doomed" in alert.error
    assert "retries exhausted for 1 users: doomed" in caplog.text
    # Parked: a further run leaves it alone.
    db.execute(update(JobRetryQueue).values(next_retry_at=func.now() - timedelta(seconds=1)))
    db.commit()
    assert celery_app.send_task("intelligence.retry_failed").get(timeout=60)["due"] == 0


def test_progress_is_visible_while_the_job_runs(client, celery_app, db, app):
    users = [f"p-{n:03}" for n in range(120)]  # three batches of 50
    for user_id in users:
        make_user(db, user_id)
    # Hold the last batch: an uncommitted brief for its last user blocks that batch's upsert.
    blocker = app.extensions["db"].engine.connect()
    transaction = blocker.begin()
    blocker.execute(
        text(
            "INSERT INTO weekly_briefs (user_id, week_of, week_stats, main_story, insights, patterns, "
            "velocity) VALUES ('p-119', :w, '{}', '', '[]', '{}', '{}')"
        ),
        {"w": date(2026, 1, 5)},
    )
    try:
        task_id = client.post(
            "/api/v1/admin/intelligence/trigger", json={"week_of": WEEK}, headers=ADMIN
        ).json["task_id"]

        def in_progress():
            body = client.get(f"/api/v1/jobs/{task_id}", headers=ADMIN).json
            progress = body["progress"] or {}
            return body if body["state"] == "PROGRESS" and progress.get("done", 0) >= 100 else None

        seen = wait_for(in_progress)
        assert seen["progress"]["total"] == 120
        assert seen["progress"]["done"] < 120
    finally:
        transaction.rollback()
        blocker.close()

    def finished():
        body = client.get(f"/api/v1/jobs/{task_id}", headers=ADMIN).json
        return body if body["state"] == "SUCCESS" else None

    done = wait_for(finished)
    assert done["result"]["users_processed"] == 120
    assert done["result"]["success_rate"] == 1.0


def test_cache_ttl_hits_misses_and_invalidation(client, auth, celery_app, db, redis_conn):
    make_user(db, "cached")
    make_session(db, "cached", at("2026-01-06T10:00"), 30)
    run_weekly(celery_app, week_of=WEEK)
    headers = auth("cached")

    first = client.get("/api/v1/intelligence/briefs/latest", headers=headers)
    second = client.get("/api/v1/intelligence/briefs/latest", headers=headers)
    client.get(f"/api/v1/intelligence/briefs/{WEEK}", headers=headers)

    assert first.status_code == second.status_code == 200
    assert first.json == second.json and first.json["week_of"] == WEEK
    week_ttl = redis_conn.ttl(f"brief:cached:{WEEK}")
    assert 7 * 24 * 3600 - 60 < week_ttl <= 7 * 24 * 3600
    cache = client.get("/api/v1/admin/intelligence/health", headers=ADMIN).json["checks"]["cache_hit_rate"]
    assert (cache["hits"], cache["misses"]) == (1, 2)

    # The user's data changes: every cached brief of theirs goes.
    started = client.post("/api/v1/focus-sessions/start", json={}, headers=headers).json["id"]
    client.post(f"/api/v1/focus-sessions/{started}/end", json={"was_completed": True}, headers=headers)
    assert redis_conn.exists(f"brief:cached:{WEEK}", "brief:cached:latest") == 0

    # A regenerated brief is never served stale from the cache.
    client.get(f"/api/v1/intelligence/briefs/{WEEK}", headers=headers)
    db.execute(text("UPDATE focus_sessions SET duration_minutes = 55 WHERE user_id = 'cached'"))
    db.commit()
    run_weekly(celery_app, week_of=WEEK, force_refresh=True)
    assert brief(client, auth, "cached").json["week_stats"]["focus_minutes"] == 55


def test_health_after_a_good_run(client, celery_app, db):
    assert client.get("/api/v1/admin/intelligence/health", headers=ADMIN).json["healthy"] is False
    make_user(db, "h")
    run_weekly(celery_app, week_of=WEEK)

    body = client.get("/api/v1/admin/intelligence/health", headers=ADMIN).json

    checks = body["checks"]
    assert set(checks) == {
        "last_run",
        "success_rate",
        "generation_time",
        "cache_hit_rate",
        "error_rate",
        "deadline",
    }
    assert checks["last_run"]["healthy"] and checks["last_run"]["hours_since_last_run"] < 1
    assert checks["success_rate"] == {"healthy": True, "success_rate": 1.0, "threshold": 0.95}
    assert checks["generation_time"]["healthy"] is True
    assert checks["error_rate"]["error_rate"] == 0.0
    assert (body["score"], body["healthy"]) == (1.0, True)


def test_admin_key_missing_or_wrong(client):
    for method, path in (("post", "/trigger"), ("get", "/health")):
        url = f"/api/v1/admin/intelligence{path}"
        missing = getattr(client, method)(url, json={})
        wrong = getattr(client, method)(url, json={}, headers={"X-API-Key": "not-the-key-000000000000"})
        assert (missing.status_code, wrong.status_code) == (401, 403)
        assert missing.json["message"] and wrong.json["message"] == "wrong API key"


def test_bad_input_is_422_with_field_errors(client, auth):
    cases = [
        ({"week_of": "2026-01-06"}, "week_of"),
        ({"week_of": "2099-01-05"}, "week_of"),
        ({"week_of": "soon"}, "week_of"),
        ({"user_ids": "alice"}, "user_ids"),
        ({"user_ids": []}, "user_ids"),
        ({"user_ids": [""]}, "user_ids"),
        ({"force_refresh": "maybe"}, "force_refresh"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/admin/intelligence/trigger", json=body, headers=ADMIN)
        assert response.status_code == 422, body
        assert field in response.json["errors"]["json"], response.json
    bad_json = client.post(
        "/api/v1/admin/intelligence/trigger", data="{", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422

    headers = auth("reader")
    for week in ("2026-01-06", "not-a-date", "2099-01-05"):
        response = client.get(f"/api/v1/intelligence/briefs/{week}", headers=headers)
        assert response.status_code == 422 and "week_of" in response.json["errors"]["path"]
    assert client.get(f"/api/v1/intelligence/briefs/{WEEK}", headers=headers).status_code == 404
    assert client.get("/api/v1/intelligence/briefs/latest", headers=headers).status_code == 404
    assert client.get("/api/v1/intelligence/briefs/latest").status_code == 401


def test_a_user_sees_only_their_own_brief(client, auth, celery_app, db):
    make_user(db, "owner")
    run_weekly(celery_app, week_of=WEEK, user_ids=["owner"])

    assert brief(client, auth, "owner").status_code == 200
    assert brief(client, auth, "someone-else").status_code == 404


def test_bad_task_arguments_fail_with_a_reason(celery_app, db):
    bad_calls = [
        ("intelligence.weekly", {"trigger": "sometimes"}),
        ("intelligence.weekly", {"week_of": "2026-01-06"}),
        ("intelligence.weekly", {"user_ids": "alice"}),
        ("intelligence.weekly", {"force_refresh": "yes"}),
        ("intelligence.generate", {"user_ids": ["a"]}),  # no week
        ("intelligence.generate", {"user_ids": ["a"], "week_of": "2026-13-01"}),
        ("intelligence.generate", {"user_ids": ["a"], "run_id": "7b0c1c55-4a43-4f5e-9a0b-1c2d3e4f5a6b"}),
        ("intelligence.retry_failed", {"trigger": 3}),
    ]
    for name, kwargs in bad_calls:
        result = celery_app.send_task(name, kwargs=kwargs)
        with pytest.raises(Exception) as failure:
            result.get(timeout=30)
        assert result.state == "FAILURE"
        assert "must" in str(failure.value) or "go together" in str(failure.value), failure.value

    make_user(db, "after")
    generated = celery_app.send_task(
        "intelligence.generate", kwargs={"user_ids": ["after", "ghost"], "week_of": WEEK}
    ).get(timeout=30)
    assert (generated["written"], generated["failed"], generated["skipped"]) == (1, [], ["ghost"])
