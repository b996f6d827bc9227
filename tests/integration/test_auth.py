"""Who may call what: bearer tokens for users, the admin key for operators."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import insert, text

from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.ops import task_owners
from tests.conftest import TEST_ADMIN_KEY, TEST_SECRET
from tests.integration.openapi_ops import operations, select

OTHER_SECRET = "another-secret-0123456789abcdef-0123456789"


def token(secret=TEST_SECRET, algorithm="HS256", **claims) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 600, **claims}, secret, algorithm)


BAD_CREDENTIALS = {
    "missing header": {},
    "not bearer": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "empty bearer": {"Authorization": "Bearer "},
    "garbage": {"Authorization": "Bearer not.a.jwt"},
    "wrong signature": {"Authorization": f"Bearer {token(secret=OTHER_SECRET)}"},
    "expired": {"Authorization": "Bearer " + token(exp=int(time.time()) - 10)},
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
    # Signed with the right key, but the subject could not be stored or would forge a log line.
    "subject with NUL": {"Authorization": "Bearer " + token(sub="ali\u0000ce")},
    "subject with a lone surrogate": {"Authorization": "Bearer " + token(sub="ali\ud800ce")},
    "subject of spaces": {"Authorization": "Bearer " + token(sub="   ")},
    "subject with a newline": {"Authorization": "Bearer " + token(sub="alice\nlevel=INFO forged")},
    "subject with a line separator": {"Authorization": "Bearer " + token(sub="alice\u2028forged")},
    "subject with a tab": {"Authorization": "Bearer " + token(sub="ali\tce")},
    "subject padded": {"Authorization": "Bearer " + token(sub=" alice")},
    # NaN compares false with every time: the token never expired.
    "exp NaN": {"Authorization": "Bearer " + token(exp=float("nan"))},
    "exp Infinity": {"Authorization": "Bearer " + token(exp=float("inf"))},
    "nbf NaN": {"Authorization": "Bearer " + token(nbf=float("nan"))},
}


@pytest.mark.parametrize("op", select(lambda op: op.user))
@pytest.mark.parametrize("case", BAD_CREDENTIALS)
def test_user_endpoints_answer_401_json_without_a_valid_token(client, op, case):
    """Every endpoint of the OpenAPI document that takes a bearer token, whatever its family."""
    response = client.open(op.path(), method=op.method, headers=BAD_CREDENTIALS[case], json={})

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


def test_a_token_checked_once_still_expires_and_must_be_valid_yet(client):
    """Signatures are verified once per token and process; exp and nbf on every request."""
    short_lived = {"Authorization": "Bearer " + token(exp=int(time.time()) + 2)}
    assert client.get("/api/v1/focus-sessions/active", headers=short_lived).status_code == 200
    time.sleep(2.1)
    expired = client.get("/api/v1/focus-sessions/active", headers=short_lived)
    assert expired.status_code == 401 and expired.json["message"] == "token expired"

    early = {"Authorization": "Bearer " + token(nbf=int(time.time()) + 60)}
    for _ in range(2):
        refused = client.get("/api/v1/focus-sessions/active", headers=early)
        assert refused.status_code == 401 and "not yet valid" in refused.json["message"]


def test_a_new_user_on_a_write_path_is_created_in_its_timezone(client, db):
    """Session start and chat posts create the user row inside their own statement."""
    berlin = {"Authorization": "Bearer " + token(sub="bob", zoneinfo="Europe/Berlin")}
    assert client.post("/api/v1/focus-sessions/start", json={}, headers=berlin).status_code == 201
    lisbon = {"Authorization": "Bearer " + token(sub="carol", zoneinfo="Europe/Lisbon")}
    message = {"context_type": "work", "content": "hello"}
    assert client.post("/api/v1/chat/messages", json=message, headers=lisbon).status_code == 201

    zones = dict(db.execute(text("SELECT id, timezone FROM users WHERE id IN ('bob', 'carol')")).all())
    assert zones == {"bob": "Europe/Berlin", "carol": "Europe/Lisbon"}


def test_jobs_endpoint_with_a_wrong_admin_key_is_403_and_without_one_401(client):
    assert client.get("/api/v1/jobs/x", headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get("/api/v1/jobs/x", headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/api/v1/jobs/x", headers={"X-API-Key": TEST_ADMIN_KEY}).status_code == 404


def test_public_service_endpoints_need_no_token(client):
    assert client.get("/api/v1/health").json == {"status": "ok"}
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


def test_every_endpoint_declares_how_it_is_secured():
    public = {op.id for op in operations() if not op.schemes}

    assert public == {"GET /api/v1/health", "GET /api/v1/ready"}


@pytest.mark.parametrize("op", select(lambda op: op.admin and not op.user))
def test_admin_endpoints_answer_401_without_the_key_and_403_with_a_wrong_one(client, op):
    missing = client.open(op.path(), method=op.method, json={})
    wrong = client.open(op.path(), method=op.method, json={}, headers={"X-API-Key": "x" * 31})
    user = client.open(op.path(), method=op.method, json={}, headers={"Authorization": f"Bearer {token()}"})

    assert (missing.status_code, missing.json["code"]) == (401, 401)
    assert (wrong.status_code, wrong.json["code"]) == (403, 403)
    assert user.status_code == 401, "a user token is not an admin key"


def _alice_session(client, db, redis_conn, headers):
    return {"session_id": client.post("/api/v1/focus-sessions/start", json={}, headers=headers).json["id"]}


def _alice_analysis_job(client, db, redis_conn, headers):
    response = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=headers)
    return {"job_id": response.json["job"]["id"]}


def _alice_brief(client, db, redis_conn, headers):
    week_of = "2026-01-05"
    db.execute(
        insert(WeeklyBrief).values(
            user_id="alice",
            week_of=week_of,
            week_stats={},
            main_story="-",
            insights=[],
            patterns={},
            velocity={},
        )
    )
    db.commit()
    return {"week_of": week_of}


def _alice_task(client, db, redis_conn, headers):
    task_owners.record_owner(redis_conn, "task-of-alice", "alice", 60)
    return {"task_id": "task-of-alice"}


def _alice_attribute(client, db, redis_conn, headers):
    body = {"category": "preference", "key": "drink", "value": "tea"}
    return {"attribute_id": client.post("/api/v1/profile/attributes", json=body, headers=headers).json["id"]}


# One way to own a resource per path template that names one; a new template fails the test
# below until it gets its factory here.
OWNED_BY_ALICE = {
    "/api/v1/focus-sessions/{session_id}/end": _alice_session,
    "/api/v1/focus-sessions/{session_id}/insights": _alice_session,
    "/api/v1/focus-sessions/{session_id}": _alice_session,
    "/api/v1/profile/analyze/{job_id}": _alice_analysis_job,
    "/api/v1/intelligence/briefs/{week_of}": _alice_brief,
    "/api/v1/jobs/{task_id}": _alice_task,
    "/api/v1/profile/attributes/{attribute_id}": _alice_attribute,
}


@pytest.mark.parametrize("op", select(lambda op: op.user and op.path_params))
def test_another_users_resource_answers_404(client, db, redis_conn, op):
    assert op.template in OWNED_BY_ALICE, f"add a factory for {op.template} to OWNED_BY_ALICE"
    alice = {"Authorization": "Bearer " + token(sub="alice")}
    bob = {"Authorization": "Bearer " + token(sub="bob")}
    client.get("/api/v1/focus-sessions/active", headers=alice)  # alice exists
    path = op.path(**OWNED_BY_ALICE[op.template](client, db, redis_conn, alice))
    body = {"was_completed": True} if op.template.endswith("/end") else {}

    theirs = client.open(path, method=op.method, json=body, headers=bob)
    own = client.open(path, method=op.method, json=body, headers=alice)

    assert (theirs.status_code, theirs.json["code"]) == (404, 404)
    assert own.status_code != 404 and own.status_code < 500, own.json


@pytest.mark.parametrize("op", select(lambda op: op.has_body))
def test_bodies_over_the_limit_answer_413(client, op):
    """64 KiB, or the endpoint's own documented limit (`x-max-body-bytes`)."""
    headers = {"X-API-Key": TEST_ADMIN_KEY} if op.admin else {"Authorization": f"Bearer {token()}"}
    oversized = '{"content": "' + "x" * op.max_body_bytes + '"}'

    response = client.open(
        op.path(), method=op.method, data=oversized, content_type="application/json", headers=headers
    )

    assert (response.status_code, response.json["code"]) == (413, 413)
