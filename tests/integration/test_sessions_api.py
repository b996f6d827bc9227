"""The focus-session and task endpoints as a web client uses them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import text

from focus_app.services.focus import profiles
from focus_app.services.jobkit import keys
from tests.integration.factories import make_session, make_user

API = "/api/v1"


def start(client, headers, **body):
    return client.post(f"{API}/focus-sessions/start", json=body, headers=headers)


def end(client, headers, session_id, **body):
    return client.post(
        f"{API}/focus-sessions/{session_id}/end", json={"was_completed": True, **body}, headers=headers
    )


def test_a_full_session_lifecycle(client, auth, redis_conn, db):
    headers = auth("alice")
    task = client.post(
        f"{API}/tasks",
        json={"title": "Cell respiration", "course": "BIO101", "task_type": "reading"},
        headers=headers,
    )
    assert task.status_code == 201

    started = start(
        client,
        headers,
        expected_duration=25,
        task_id=task.json["id"],
        context="Chapter 5",
        session_type="deep_work",
    )
    assert started.status_code == 201
    assert started.json["is_active"] and started.json["end_time"] is None
    assert (
        client.get(f"{API}/focus-sessions/active", headers=headers).json["session"]["id"]
        == started.json["id"]
    )

    ended = end(
        client,
        headers,
        started.json["id"],
        focus_score=4,
        interruption_count=1,
        session_notes="Good",
        focus_quality={"noise": "low", "energy": 4},
        cycles_completed=1,
    )
    assert ended.status_code == 200
    body = ended.json
    assert body["is_active"] is False
    assert body["duration_minutes"] == 0  # ended at once: timing is the server's
    assert (body["focus_score"], body["interruption_count"]) == (4, 1)
    assert body["focus_quality"] == {"noise": "low", "energy": 4}
    assert client.get(f"{API}/focus-sessions/active", headers=headers).json == {"session": None}
    # Ending flags the user for a profile update with their new sessions version.
    assert redis_conn.get(keys.update_flag("alice")) == b"1"

    again = end(client, headers, started.json["id"])
    assert again.status_code == 409
    assert "already ended" in again.json["message"]


def test_one_active_session_per_user(client, auth):
    headers = auth("bob")
    first = start(client, headers)
    second = start(client, headers)

    assert second.status_code == 409
    assert second.json["errors"]["active_session_id"] == first.json["id"]
    assert start(client, auth("carol")).status_code == 201


def test_another_users_session_is_not_found(client, auth):
    owner, stranger = auth("owner"), auth("stranger")
    session_id = start(client, owner).json["id"]

    assert end(client, stranger, session_id).status_code == 404
    assert client.get(f"{API}/focus-sessions/{session_id}/insights", headers=stranger).status_code == 404
    assert client.delete(f"{API}/focus-sessions/{session_id}", headers=stranger).status_code == 404
    assert client.get(f"{API}/focus-sessions/history", headers=stranger).json["total"] == 0
    assert client.get(f"{API}/focus-sessions/active", headers=owner).json["session"]["id"] == session_id


def test_a_session_cannot_be_about_another_users_task(client, auth):
    task_id = client.post(f"{API}/tasks", json={"title": "Mine"}, headers=auth("a")).json["id"]

    response = start(client, auth("b"), task_id=task_id)

    assert response.status_code == 422
    assert "task_id" in response.json["errors"]["json"]


def test_delete_flags_the_user_and_a_second_delete_is_404(client, auth, redis_conn):
    headers = auth("dora")
    session_id = start(client, headers).json["id"]
    end(client, headers, session_id)

    assert client.delete(f"{API}/focus-sessions/{session_id}", headers=headers).status_code == 204
    assert redis_conn.get(keys.update_flag("dora")) == b"2"
    assert client.delete(f"{API}/focus-sessions/{session_id}", headers=headers).status_code == 404


def test_history_filters_and_pages(client, auth, db):
    user = make_user(db, "hist", "America/New_York")
    base = datetime(2026, 3, 2, 15, tzinfo=UTC)  # 10:00 in New York
    for n in range(7):
        make_session(db, user, base + timedelta(days=n), 25, completed=n % 2 == 0)
    # 01:00 UTC on 9 March is still 8 March in New York.
    make_session(db, user, datetime(2026, 3, 9, 1, tzinfo=UTC), 30)
    headers = auth("hist")

    everything = client.get(f"{API}/focus-sessions/history?page_size=3", headers=headers).json
    assert (everything["total"], len(everything["items"]), everything["page"]) == (8, 3, 1)
    starts = [item["start_time"] for item in everything["items"]]
    assert starts == sorted(starts, reverse=True)
    last_page = client.get(f"{API}/focus-sessions/history?page_size=3&page=3", headers=headers).json
    assert len(last_page["items"]) == 2

    march_8 = client.get(
        f"{API}/focus-sessions/history?start_date=2026-03-08&end_date=2026-03-08", headers=headers
    ).json
    assert march_8["total"] == 2  # the 10:00 session and the 20:00 (01:00 UTC next day) one
    completed = client.get(f"{API}/focus-sessions/history?was_completed=true", headers=headers).json
    assert completed["total"] == 5


@pytest.mark.parametrize(
    "body,field",
    [
        ({"expected_duration": 0}, "expected_duration"),
        ({"expected_duration": 721}, "expected_duration"),
        ({"expected_duration": "25"}, "expected_duration"),
        ({"expected_duration": 2.5}, "expected_duration"),
        ({"task_id": "not-a-uuid"}, "task_id"),
        ({"session_type": "nap"}, "session_type"),
        ({"context": "x" * 501}, "context"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_start_rejects_bad_input_with_field_errors(client, auth, body, field):
    response = start(client, auth("eve"), **body)

    assert response.status_code == 422
    assert field in response.json["errors"]["json"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "was_completed"),
        ({"was_completed": "maybe"}, "was_completed"),
        ({"was_completed": True, "focus_score": 0}, "focus_score"),
        ({"was_completed": True, "focus_score": 6}, "focus_score"),
        ({"was_completed": True, "interruption_count": -1}, "interruption_count"),
        ({"was_completed": True, "break_minutes": -5}, "break_minutes"),
        ({"was_completed": True, "break_minutes": 10}, "break_minutes"),  # more than elapsed
        ({"was_completed": True, "cycles_completed": 101}, "cycles_completed"),
        ({"was_completed": True, "session_notes": "x" * 2001}, "session_notes"),
        ({"was_completed": True, "focus_quality": "good"}, "focus_quality"),
        ({"was_completed": True, "focus_quality": {"k": "v" * 5000}}, "focus_quality"),
    ],
)
def test_end_rejects_bad_input_and_leaves_the_session_active(client, auth, body, field):
    headers = auth("frank")
    session_id = start(client, headers).json["id"]

    response = client.post(f"{API}/focus-sessions/{session_id}/end", json=body, headers=headers)

    assert response.status_code == 422
    assert field in response.json["errors"]["json"]
    assert client.get(f"{API}/focus-sessions/active", headers=headers).json["session"]["id"] == session_id


@pytest.mark.parametrize(
    "query,field",
    [
        ("start_date=yesterday", "start_date"),
        ("start_date=2026-03-09&end_date=2026-03-01", "start_date"),
        ("page=0", "page"),
        ("page_size=101", "page_size"),
        ("was_completed=perhaps", "was_completed"),
        ("task_id=42", "task_id"),
        ("session_type=nap", "session_type"),
    ],
)
def test_history_rejects_bad_query_args(client, auth, query, field):
    response = client.get(f"{API}/focus-sessions/history?{query}", headers=auth("gil"))

    assert response.status_code == 422
    assert field in response.json["errors"]["query"]


def test_malformed_and_oversized_bodies(client, auth):
    headers = {**auth("hal"), "Content-Type": "application/json"}

    malformed = client.post(f"{API}/focus-sessions/start", data="{not json", headers=headers)
    assert malformed.status_code == 422
    assert malformed.json["errors"] == {"json": ["Invalid JSON body."]}

    huge = client.post(f"{API}/tasks", data='{"title": "' + "x" * 70_000 + '"}', headers=headers)
    assert huge.status_code == 413
    assert huge.json["code"] == 413


def test_unknown_routes_and_methods_answer_json(client, auth):
    missing = client.get(f"{API}/nothing-here")
    assert missing.status_code == 404 and missing.json["code"] == 404
    wrong_method = client.put(f"{API}/focus-sessions/active", headers=auth("ian"))
    assert wrong_method.status_code == 405 and wrong_method.json["code"] == 405
    not_a_uuid = client.get(f"{API}/focus-sessions/123/insights", headers=auth("ian"))
    assert not_a_uuid.status_code == 404


def test_tasks_are_listed_newest_first_and_validated(client, auth):
    headers = auth("jo")
    for title in ("first", "second", "third"):
        assert client.post(f"{API}/tasks", json={"title": title}, headers=headers).status_code == 201
    listed = client.get(f"{API}/tasks?page_size=2", headers=headers).json

    assert listed["total"] == 3
    assert [task["title"] for task in listed["items"]] == ["third", "second"]
    assert client.get(f"{API}/tasks", headers=auth("someone-else")).json["total"] == 0
    for bad in ({}, {"title": ""}, {"title": "x" * 201}, {"title": "t", "course": "c" * 101}):
        response = client.post(f"{API}/tasks", json=bad, headers=headers)
        assert response.status_code == 422, bad


def test_profile_empty_states_then_ready(client, auth, db):
    headers = auth("kim")
    assert client.get(f"{API}/focus-sessions/profile", headers=headers).json["status"] == "insufficient_data"
    for n in range(3):
        make_session(db, "kim", datetime(2026, 1, 5 + n, 9, tzinfo=UTC), 25)
    pending = client.get(f"{API}/focus-sessions/profile", headers=headers).json
    assert (pending["status"], pending["sessions_recorded"]) == ("pending", 3)

    profiles.compute_profiles(db, ["kim"], min_sessions=3)
    db.commit()
    ready = client.get(f"{API}/focus-sessions/profile", headers=headers).json
    assert ready["status"] == "ready"
    assert ready["profile"]["avg_focus_duration_minutes"] == 25


def test_profile_is_served_from_the_cache_until_recomputed(client, auth, db, redis_conn):
    headers = auth("lee")
    make_user(db, "lee")
    for n in range(3):
        make_session(db, "lee", datetime(2026, 1, 5 + n, 9, tzinfo=UTC), 20)
    profiles.compute_profiles(db, ["lee"], min_sessions=3)
    db.commit()
    assert client.get(f"{API}/focus-sessions/profile", headers=headers).json["status"] == "ready"
    ttl = redis_conn.ttl(keys.profile_cache("lee"))
    assert 3500 < ttl <= 3600

    db.execute(text("UPDATE user_focus_profiles SET avg_focus_duration_minutes = 99"))
    db.commit()
    cached = client.get(f"{API}/focus-sessions/profile", headers=headers).json
    assert cached["profile"]["avg_focus_duration_minutes"] == 20  # the cached copy

    redis_conn.delete(keys.profile_cache("lee"))
    fresh = client.get(f"{API}/focus-sessions/profile", headers=headers).json
    assert fresh["profile"]["avg_focus_duration_minutes"] == 99


def test_insights_compare_with_the_users_own_averages(client, auth, db):
    user = make_user(db, "max")
    for n in range(3):
        make_session(db, user, datetime(2026, 1, 5 + n, 9, tzinfo=UTC), 20, interruptions=2)
    session_id = make_session(
        db, user, datetime(2026, 1, 9, 9, tzinfo=UTC), 30, expected=25, interruptions=0, score=5
    )

    body = client.get(f"{API}/focus-sessions/{session_id}/insights", headers=auth("max")).json

    assert body["compared_with"]["sessions"] == 3
    messages = {insight["metric"]: insight for insight in body["insights"]}
    assert messages["duration"]["type"] == "positive"
    assert "30min, 50% longer than your average" in messages["duration"]["message"]
    assert messages["interruptions"]["message"].startswith("Perfect focus")
    assert messages["focus_score"]["type"] == "positive"
    assert "20% longer than the 25min you planned" in messages["estimate"]["message"]


def test_insights_of_an_active_session_is_a_conflict(client, auth):
    headers = auth("ned")
    session_id = start(client, headers).json["id"]

    response = client.get(f"{API}/focus-sessions/{session_id}/insights", headers=headers)

    assert response.status_code == 409


def test_writes_succeed_when_redis_is_down(app, client, auth, monkeypatch, db):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setitem(app.extensions, "redis", dead)
    headers = auth("olga")

    session_id = start(client, headers).json["id"]
    ended = end(client, headers, session_id)

    assert ended.status_code == 200
    # The flag was lost with Redis, but PostgreSQL knows the profile is out of date.
    assert db.execute(
        text("SELECT sessions_version <> profiled_version FROM users WHERE id = 'olga'")
    ).scalar_one()
    assert client.get(f"{API}/focus-sessions/profile", headers=headers).status_code == 200
