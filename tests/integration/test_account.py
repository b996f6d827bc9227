"""Settings, export and deletion of the caller's account (issue 7) against the real stack."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from focus_app.models import User, UserFocusProfile
from focus_app.models.analysis import AnalysisJob, ProfileInterpretation
from focus_app.models.attributes import ProfileAttribute, ProfileEntity
from focus_app.models.intelligence import JobRetryQueue, UserPreference, WeeklyBrief
from focus_app.services.account import deletion
from focus_app.services.analysis import jobs as analysis_jobs
from focus_app.services.analysis import triggers
from focus_app.services.jobkit import keys
from tests.integration.conftest import wait_for
from tests.integration.factories import make_session, make_user

pytestmark = pytest.mark.usefixtures("worker")

DAY = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday, 09:00 UTC
WEEK = "2026-01-05"


def seed_sessions(db, user_id: str, count: int = 4) -> None:
    for n in range(count):
        make_session(db, user_id, DAY + timedelta(days=n), 25 + n, score=4)


def peak_hours(db, user_id: str):
    db.rollback()
    return db.scalar(select(UserFocusProfile.peak_focus_hours).where(UserFocusProfile.user_id == user_id))


def rows_of(db, user_id: str) -> dict[str, int]:
    """How many rows each table holds for the user (every table with a user_id column, and users)."""
    db.rollback()
    linked, unlinked = deletion.user_tables()
    counts = {
        table.name: db.scalar(select(func.count()).select_from(table).where(table.c.user_id == user_id))
        for table in linked + unlinked
    }
    counts["users"] = db.scalar(select(func.count()).select_from(User).where(User.id == user_id))
    for model in (ProfileAttribute, ProfileEntity):
        counts[model.__tablename__] = db.scalar(
            select(func.count())
            .select_from(model)
            .where(model.entity_type == "user", model.entity_id == user_id)
        )
    return {name: n for name, n in counts.items() if n}


# ---------------------------------------------------------------- settings


def test_new_user_has_default_settings(client, auth):
    answer = client.get("/api/v1/me", headers=auth("alice"))
    assert answer.status_code == 200
    assert answer.json["timezone"] == "UTC"
    assert answer.json["weekly_brief"] == {
        "enabled": True,
        "frequency": "weekly",
        "notification": True,
        "last_generated_at": None,
    }


def test_patch_preferences_and_bad_input(client, auth, db):
    headers = auth("alice")
    changed = client.patch("/api/v1/me", json={"weekly_brief": {"enabled": False}}, headers=headers)
    assert changed.status_code == 200
    assert changed.json["weekly_brief"]["enabled"] is False
    assert changed.json["weekly_brief"]["notification"] is True
    assert db.get(UserPreference, "alice").intelligence_generation_enabled is False
    assert client.get("/api/v1/me", headers=headers).json["weekly_brief"]["enabled"] is False

    bad = [
        ({"timezone": "Mars/Olympus"}, ["json", "timezone"]),
        ({"timezone": ""}, ["json", "timezone"]),
        ({"weekly_brief": {"frequency": "hourly"}}, ["json", "weekly_brief", "frequency"]),
        ({"weekly_brief": {"enabled": "maybe"}}, ["json", "weekly_brief", "enabled"]),
        ({}, ["json", "_schema"]),
    ]
    for body, path in bad:
        answer = client.patch("/api/v1/me", json=body, headers=headers)
        assert answer.status_code == 422, body
        errors = answer.json["errors"]
        for key in path:
            errors = errors[key]
        assert errors
    assert (
        client.patch("/api/v1/me", data="{", headers=headers, content_type="application/json").status_code
        == 422
    )
    assert client.get("/api/v1/me").status_code == 401


def test_timezone_change_recomputes_the_profile_in_the_new_zone(client, auth, db, redis_conn, celery_app):
    make_user(db, "alice")
    seed_sessions(db, "alice")
    celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["alice"]}).get(timeout=60)
    assert wait_for(lambda: peak_hours(db, "alice")) == [9]
    version = db.get(User, "alice").sessions_version

    answer = client.patch("/api/v1/me", json={"timezone": "Asia/Tokyo"}, headers=auth("alice"))
    assert answer.status_code == 200 and answer.json["timezone"] == "Asia/Tokyo"
    db.rollback()
    user = db.get(User, "alice")
    assert user.sessions_version == version + 1 and user.profiled_version == version
    assert int(redis_conn.get(keys.update_flag("alice"))) == version + 1
    # The same timezone again changes nothing.
    client.patch("/api/v1/me", json={"timezone": "Asia/Tokyo"}, headers=auth("alice"))
    db.rollback()
    assert db.get(User, "alice").sessions_version == version + 1

    celery_app.send_task("focus.update_profiles").get(timeout=60)

    assert wait_for(lambda: peak_hours(db, "alice") == [18])  # 09:00 UTC is 18:00 in Tokyo


# ---------------------------------------------------------------- export


def test_csv_export_has_the_callers_sessions_only(client, auth, db):
    make_user(db, "alice")
    make_user(db, "bob")
    seed_sessions(db, "alice", 3)
    seed_sessions(db, "bob", 2)
    client.post("/api/v1/focus-sessions/start", json={"context": '=HYPERLINK("x")'}, headers=auth("alice"))

    answer = client.get("/api/v1/me/export?format=csv", headers=auth("alice"))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="focus-export-')
    assert answer.headers["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    answer.close()  # a streamed response holds its request context (and connection) until closed
    assert len(rows) == 4
    assert [row["duration_minutes"] for row in rows] == ["25", "26", "27", ""]
    assert rows[0]["start_time"] == DAY.isoformat() and rows[0]["focus_score"] == "4"
    assert rows[-1]["context"] == '\'=HYPERLINK("x")'  # a formula is neutralised for spreadsheets

    assert client.get("/api/v1/me/export?format=xml", headers=auth("alice")).status_code == 422


def test_json_export_has_everything(client, auth, db, celery_app):
    make_user(db, "alice")
    seed_sessions(db, "alice")
    celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["alice"]}).get(timeout=60)
    wait_for(lambda: peak_hours(db, "alice"))
    celery_app.send_task("intelligence.generate", kwargs={"user_ids": ["alice"], "week_of": WEEK}).get(
        timeout=60
    )
    client.post(
        "/api/v1/chat/messages", json={"context_type": "study", "content": "hi"}, headers=auth("alice")
    )
    make_user(db, "bob")
    seed_sessions(db, "bob", 1)

    answer = client.get("/api/v1/me/export", headers=auth("alice"))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Content-Disposition"].endswith('.json"')
    document = json.loads(answer.get_data(as_text=True))
    answer.close()
    assert document["account"]["user_id"] == "alice"
    assert document["profile"]["total_sessions_count"] == 4
    assert [brief["week_of"] for brief in document["briefs"]] == [WEEK]
    assert [m["content"] for m in document["chat_messages"]] == ["hi"]
    assert document["interpretations"] == [] and document["attributes"] == []
    assert len(document["sessions"]) == 4 and {s["duration_minutes"] for s in document["sessions"]} == {
        25,
        26,
        27,
        28,
    }


def test_csv_export_streams_in_bounded_memory(client, auth, db):
    count = 40_000
    make_user(db, "heavy")
    db.execute(
        text(
            """
            INSERT INTO focus_sessions (user_id, start_time, end_time, duration_minutes, expected_duration,
                                        was_completed, focus_score, context)
            SELECT 'heavy', t, t + interval '25 minutes', 25, 25, n % 3 <> 0, 1 + n % 5, 'session ' || n
            FROM generate_series(1, :count) AS n,
                 LATERAL (SELECT timestamptz '2025-01-01' + n * interval '10 minutes') AS s(t)
            """
        ),
        {"count": count},
    )
    db.commit()

    tracemalloc.start()
    try:
        answer = client.get("/api/v1/me/export?format=csv", headers=auth("heavy"), buffered=False)
        assert answer.status_code == 200
        assert answer.is_streamed
        size = lines = 0
        for chunk in answer.response:
            size += len(chunk)
            lines += chunk.count(b"\n")
        answer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == count + 1
    assert size > 3_000_000
    # Rows held at once would take many times the response; streaming holds a batch or two.
    assert peak < size / 2, (peak, size)


# ---------------------------------------------------------------- deletion


def test_delete_removes_every_row_and_key_of_the_caller_only(client, auth, db, redis_conn, celery_app):
    for user in ("alice", "bob"):
        make_user(db, user)
        seed_sessions(db, user)
        headers = auth(user)
        client.post("/api/v1/tasks", json={"title": "Essay", "course": "BIO"}, headers=headers)
        for n in range(6):
            client.post(
                "/api/v1/chat/messages", json={"context_type": "study", "content": f"m{n}"}, headers=headers
            )
        client.patch("/api/v1/me", json={"weekly_brief": {"notification": False}}, headers=headers)
        attribute = {"category": "preference", "key": "music", "value": "lo-fi"}
        assert client.post("/api/v1/profile/attributes", json=attribute, headers=headers).status_code == 201
    celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["alice", "bob"]}).get(timeout=60)
    celery_app.send_task("intelligence.generate", kwargs={"user_ids": ["alice", "bob"], "week_of": WEEK}).get(
        timeout=60
    )
    db.add(
        JobRetryQueue(
            job_name="intelligence.weekly", user_id="alice", week_of=date(2026, 1, 5), next_retry_at=DAY
        )
    )
    db.commit()
    wait_for(lambda: "user_focus_profiles" in rows_of(db, "alice"))
    for user in ("alice", "bob"):
        assert client.get("/api/v1/focus-sessions/profile", headers=auth(user)).json["status"] == "ready"
        assert client.get("/api/v1/intelligence/briefs/latest", headers=auth(user)).status_code == 200
    redis_conn.set(keys.update_flag("alice"), 1, ex=60)
    before = rows_of(db, "alice")
    assert {
        "focus_sessions",
        "tasks",
        "chat_messages",
        "analysis_jobs",
        "weekly_briefs",
        "user_preferences",
        "user_focus_profiles",
        "job_retry_queue",
        "profile_attributes",
        "profile_entities",
        "users",
    } <= set(before)
    assert list(redis_conn.scan_iter(match="*alice*"))
    bob_before = rows_of(db, "bob")

    answer = client.delete("/api/v1/me", headers=auth("alice"))
    assert answer.status_code == 204 and answer.data == b""

    assert rows_of(db, "alice") == {}
    assert list(redis_conn.scan_iter(match="focus:*alice*")) == []
    assert list(redis_conn.scan_iter(match="brief:*alice*")) == []
    assert rows_of(db, "bob") == bob_before
    assert client.get("/api/v1/intelligence/briefs/latest", headers=auth("bob")).status_code == 200
    # A second call is harmless (the token is still valid: it answers 204 again).
    assert client.delete("/api/v1/me", headers=auth("alice")).status_code == 204
    assert client.get("/api/v1/intelligence/briefs/latest", headers=auth("alice")).status_code == 404


def test_jobs_queued_before_a_deletion_skip_the_deleted_user(client, auth, db, celery_app):
    make_user(db, "alice")
    seed_sessions(db, "alice")
    for n in range(12):
        client.post(
            "/api/v1/chat/messages", json={"context_type": "study", "content": f"m{n}"}, headers=auth("alice")
        )
    job = triggers.request_analysis(db, "alice", "notes", "manual", analysis_jobs.Rules()).job
    db.commit()
    # Queued now, delivered after the deletion below (countdown), through the real worker.
    later = {"countdown": 2}
    profile = celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["alice"]}, **later)
    brief = celery_app.send_task(
        "intelligence.generate", kwargs={"user_ids": ["alice"], "week_of": WEEK}, **later
    )
    # Published as every publisher does (analysis_jobs.run_message: the job id and its user).
    message = analysis_jobs.run_message(job)
    run = celery_app.send_task(
        "analysis.run", args=message.args, kwargs=message.kwargs, ignore_result=False, **later
    )

    assert client.delete("/api/v1/me", headers=auth("alice")).status_code == 204
    assert rows_of(db, "alice") == {}

    assert brief.get(timeout=60)["skipped"] == ["alice"]
    # The job went with the account; its message names the user, who is gone: skipped, not failed.
    assert run.get(timeout=60) == {"status": "skipped", "job_id": str(job.id), "detail": "user deleted"}
    summary = profile.get(timeout=60)
    wait_for(
        lambda: (
            db.rollback()
            or db.scalar(
                text("SELECT finished_at IS NOT NULL FROM job_runs WHERE id = :id"), {"id": summary["run_id"]}
            )
        )
    )
    assert rows_of(db, "alice") == {}
    assert db.scalar(select(func.count()).select_from(WeeklyBrief)) == 0
    assert db.scalar(select(func.count()).select_from(ProfileInterpretation)) == 0
    assert db.scalar(select(func.count()).select_from(AnalysisJob)) == 0


def test_a_deleted_users_analysis_job_is_skipped_even_after_the_token_recreates_the_user(
    client, auth, db, celery_app
):
    """The still-valid token re-creates an empty user row on its next use; the row is newer than
    the job's message, so the job still ends as skipped."""
    make_user(db, "alice")
    job = triggers.request_analysis(db, "alice", "notes", "manual", analysis_jobs.Rules()).job
    db.commit()
    message = analysis_jobs.run_message(job)
    run = celery_app.send_task(
        "analysis.run", args=message.args, kwargs=message.kwargs, ignore_result=False, countdown=2
    )

    assert client.delete("/api/v1/me", headers=auth("alice")).status_code == 204
    assert client.get("/api/v1/me", headers=auth("alice")).status_code == 200  # row re-created

    assert run.get(timeout=60)["status"] == "skipped"
    assert db.scalar(select(func.count()).select_from(AnalysisJob)) == 0


def test_an_unknown_job_of_an_existing_user_still_fails_as_not_found(db, celery_app):
    """Only a deleted account explains a missing job: for a user who was there all along an unknown
    id is an error, as for a hand-typed id without a user."""
    make_user(db, "alice")
    unknown = "00000000-0000-4000-8000-000000000001"
    run = celery_app.send_task(
        "analysis.run", args=[unknown], kwargs={"user_id": "alice"}, ignore_result=False
    )

    run.get(timeout=60, propagate=False)
    assert run.failed() and str(run.result) == f"analysis job {unknown} not found"
