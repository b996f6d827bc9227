"""Who may call what: bearer tokens for users, the admin key for operators."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import text

from tests.conftest import TEST_ADMIN_KEY, TEST_SECRET

USER_ENDPOINTS = [
    ("POST", "/api/v1/focus-sessions/start"),
    ("POST", "/api/v1/focus-sessions/7b0c1c55-4a43-4f5e-9a0b-1c2d3e4f5a6b/end"),
    ("GET", "/api/v1/focus-sessions/active"),
    ("GET", "/api/v1/focus-sessions/history"),
    ("GET", "/api/v1/focus-sessions/profile"),
    ("GET", "/api/v1/focus-sessions/7b0c1c55-4a43-4f5e-9a0b-1c2d3e4f5a6b/insights"),
    ("DELETE", "/api/v1/focus-sessions/7b0c1c55-4a43-4f5e-9a0b-1c2d3e4f5a6b"),
    ("POST", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks"),
    ("GET", "/api/v1/jobs/some-task-id"),
]


def token(secret=TEST_SECRET, algorithm="HS256", **claims) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 600, **claims}, secret, algorithm)


BAD_CREDENTIALS = {
    "missing header": {},
    "not bearer": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "empty bearer": {"Authorization": "Bearer "},
    "garbage": {"Authorization": "Bearer not.a.jwt"},
    "wrong signature": {"Authorization": f"Bearer {token(secret='another-secret-0123456789abcdef')}"},
    "expired": {"Authorization": f"Bearer {token(exp=int(time.time()) - 10)}"},
    "no expiry": {"Authorization": "Bearer " + jwt.encode({"sub": "alice"}, TEST_SECRET, "HS256")},
    "no subject": {"Authorization": "Bearer " + jwt.encode({"exp": int(time.time()) + 60}, TEST_SECRET)},
    "alg none": {
        "Authorization": "Bearer " + jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, "none")
    },
    "other algorithm": {"Authorization": f"Bearer {token(secret=TEST_SECRET * 2, algorithm='HS512')}"},
    "numeric subject": {
        "Authorization": "Bearer "
        + jwt.encode({"sub": 42, "exp": int(time.time()) + 60}, TEST_SECRET, "HS256")
    },
}


@pytest.mark.parametrize("method,path", USER_ENDPOINTS)
@pytest.mark.parametrize("case", BAD_CREDENTIALS)
def test_user_endpoints_answer_401_json_without_a_valid_token(client, method, path, case):
    response = client.open(path, method=method, headers=BAD_CREDENTIALS[case], json={})

    assert response.status_code == 401
    assert response.json["code"] == 401
    assert response.json["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_token_creates_the_user_on_first_use(client, db):
    response = client.get(
        "/api/v1/focus-sessions/active",
        headers={"Authorization": f"Bearer {token(zoneinfo='Europe/Berlin')}"},
    )

    assert response.status_code == 200
    timezone = db.execute(text("SELECT timezone FROM users WHERE id = 'alice'")).scalar_one()
    assert timezone == "Europe/Berlin"


def test_jobs_endpoint_with_a_wrong_admin_key_is_403_and_without_one_401(client):
    assert client.get("/api/v1/jobs/x", headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get("/api/v1/jobs/x", headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/api/v1/jobs/x", headers={"X-API-Key": TEST_ADMIN_KEY}).status_code == 404


def test_public_service_endpoints_need_no_token(client):
    assert client.get("/api/v1/health").json == {"status": "ok"}
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}
