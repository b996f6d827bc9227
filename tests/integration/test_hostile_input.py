"""Regressions found by the fuzzer (tests/integration/test_fuzz.py)."""

from __future__ import annotations

from tests.conftest import TEST_ADMIN_KEY


def test_a_nul_character_in_a_body_string_is_422_not_a_500(client, auth):
    """PostgreSQL cannot store NUL in text: psycopg2 raised ValueError and the API answered 500."""
    response = client.post("/api/v1/tasks", json={"title": "a\u0000b"}, headers=auth("nul"))

    assert response.status_code == 422
    assert response.json["errors"] == {"json": {"title": ["must not contain NUL characters"]}}
    assert client.get("/api/v1/tasks", headers=auth("nul")).json["items"] == []


def test_nul_in_nested_keys_query_strings_and_path_segments_is_422(client, auth):
    started = client.post("/api/v1/focus-sessions/start", json={}, headers=auth("nul")).json["id"]
    nested = client.post(
        f"/api/v1/focus-sessions/{started}/end",
        json={"was_completed": True, "focus_quality": {"mood\u0000": "ok"}},
        headers=auth("nul"),
    )
    query = client.get("/api/v1/profile/interpretations?context_type=wo%00rk", headers=auth("nul"))
    path = client.get("/api/v1/jobs/task%00id", headers={"X-API-Key": TEST_ADMIN_KEY})

    assert nested.status_code == 422 and nested.json["errors"]["json"] == {
        "focus_quality.mood\u0000": ["must not contain NUL characters"]
    }
    assert query.status_code == 422 and "context_type" in query.json["errors"]["query"]
    assert path.status_code == 422 and path.json["errors"] == {
        "path": {"task_id": ["must not contain NUL characters"]}
    }
    assert client.get("/api/v1/focus-sessions/active", headers=auth("nul")).json["session"]["id"] == started
