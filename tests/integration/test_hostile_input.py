"""Hostile and careless input, tried on every endpoint it applies to: each of these was a 500 or
a silent wrong answer. Regressions found by the fuzzer (tests/integration/test_fuzz.py) too."""

from __future__ import annotations

import json
import uuid

import pytest
from celery import shared_task
from sqlalchemy import func, select

from focus_app.api.base import DEPTH_MESSAGE, SURROGATE_MESSAGE, UNSUPPORTED_MEDIA_MESSAGE
from focus_app.extensions import db_session
from focus_app.models import JobRun
from focus_app.services.jobkit import fanout
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.conftest import wait_for
from tests.integration.factories import make_analysed_job, make_user
from tests.integration.openapi_ops import select as select_ops
from workers.base import FocusTask

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
LONE_SURROGATE = "\ud800"
CRASH_JOB = "hostilesuite.crash_inside_run"


def headers_for(op, auth) -> dict[str, str]:
    return dict(ADMIN) if op.admin else auth("hostile")


def assert_error_body(response, status: int) -> None:
    """Every error is {code, status, message, errors?} as JSON, whatever raised it."""
    assert response.status_code == status, response.data[:300]
    assert response.is_json
    assert response.json["code"] == status
    assert response.json["status"] and response.json["message"]


# --- NUL characters and lone surrogates -----------------------------------------------------------


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


TEXT_FIELDS = [
    ("/api/v1/tasks", {"title": LONE_SURROGATE}, "title"),
    ("/api/v1/tasks", {"title": "Essay", "course": "Bio" + LONE_SURROGATE}, "course"),
    ("/api/v1/focus-sessions/start", {"context": "x" + LONE_SURROGATE + "y"}, "context"),
    ("/api/v1/chat/messages", {"context_type": "work", "content": LONE_SURROGATE}, "content"),
    ("/api/v1/profile/attributes", {"category": "fact", "key": "city", "value": LONE_SURROGATE}, "value"),
    ("/api/v1/profile/attributes", {"category": "fact", "key": "c\udfffty", "value": "x"}, "key"),
]


@pytest.mark.parametrize("path,body,field", TEXT_FIELDS, ids=[f"{p} {f}" for p, _, f in TEXT_FIELDS])
def test_a_lone_surrogate_in_a_text_field_is_422_naming_it_and_nothing_is_written(
    client, auth, db, path, body, field
):
    """JSON may spell a lone UTF-16 surrogate ("\\ud800"); PostgreSQL cannot store it: it was a 500
    (psycopg2 UnicodeEncodeError)."""
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as the escape \ud800
    assert "\\ud" in raw or "\\udfff" in raw

    response = client.post(path, data=raw, content_type="application/json", headers=auth("surrogate"))

    assert_error_body(response, 422)
    assert response.json["errors"] == {"json": {field: [SURROGATE_MESSAGE]}}
    assert client.get("/api/v1/tasks", headers=auth("surrogate")).json["items"] == []
    assert client.get("/api/v1/focus-sessions/active", headers=auth("surrogate")).json["session"] is None
    assert client.get("/api/v1/profile/attributes", headers=auth("surrogate")).json["items"] == []


def test_a_lone_surrogate_in_a_nested_key_and_in_an_admins_user_ids_is_422(client, auth):
    started = client.post("/api/v1/focus-sessions/start", json={}, headers=auth("surrogate")).json["id"]
    nested = client.post(
        f"/api/v1/focus-sessions/{started}/end",
        data='{"was_completed": true, "focus_quality": {"m\\udc00od": "ok"}}',
        content_type="application/json",
        headers=auth("surrogate"),
    )
    trigger = client.post(
        "/api/v1/admin/intelligence/trigger",
        data='{"user_ids": ["alice", "b\\ud83dob"]}',
        content_type="application/json",
        headers=ADMIN,
    )

    assert nested.status_code == 422
    assert nested.json["errors"]["json"] == {"focus_quality.m\udc00od": [SURROGATE_MESSAGE]}
    assert trigger.status_code == 422 and trigger.json["errors"]["json"] == {
        "user_ids.1": [SURROGATE_MESSAGE]
    }
    # The session is still open: the bad end request changed nothing.
    assert (
        client.get("/api/v1/focus-sessions/active", headers=auth("surrogate")).json["session"]["id"]
        == started
    )


# --- Deep nesting, wrong content types ------------------------------------------------------------

DEEP_BODIES = {
    "5,000 [ in 10 KB": "[" * 5000 + "]" * 5000,
    "8,000 nested objects under 64 KiB": '{"a":' * 8000 + "1" + "}" * 8000,
    "40 levels inside a field": '{"was_completed": true, "focus_quality": '
    + '{"a":' * 40
    + "1"
    + "}" * 40
    + ', "context_type": "work", "content": "x", "title": "t"}',
}


@pytest.mark.parametrize("body", DEEP_BODIES)
@pytest.mark.parametrize("op", select_ops(lambda op: op.has_body))
def test_deeply_nested_json_is_422_on_every_body_endpoint(client, auth, op, body):
    """It was a 500 (RecursionError in the JSON parser) on every endpoint that takes a body."""
    raw = DEEP_BODIES[body]
    assert len(raw.encode()) < 64 * 1024

    response = client.open(
        op.path(), method=op.method, data=raw, content_type="application/json", headers=headers_for(op, auth)
    )

    assert_error_body(response, 422)
    assert response.json["errors"] == {"json": [DEPTH_MESSAGE]}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("op", select_ops(lambda op: op.has_body))
def test_a_json_body_sent_as_another_content_type_is_415_on_every_body_endpoint(
    client, auth, op, content_type
):
    """It was silently dropped: the view ran as if no body had been sent."""
    response = client.open(
        op.path(),
        method=op.method,
        data='{"title": "Essay", "was_completed": true, "context_type": "work", "content": "hi"}',
        content_type=content_type,
        headers=headers_for(op, auth),
    )

    assert_error_body(response, 415)
    assert response.json["message"] == UNSUPPORTED_MEDIA_MESSAGE


def test_a_text_plain_session_start_starts_nothing(client, auth):
    body = '{"expected_duration": 25, "context": "Biology ch. 5"}'

    refused = client.post(
        "/api/v1/focus-sessions/start", data=body, content_type="text/plain", headers=auth("u")
    )
    accepted = client.post(
        "/api/v1/focus-sessions/start", data=body, content_type="application/json", headers=auth("u")
    )

    assert refused.status_code == 415
    assert accepted.status_code == 201
    assert (accepted.json["expected_duration"], accepted.json["context"]) == (25, "Biology ch. 5")


# --- Unknown query parameters ---------------------------------------------------------------------


def test_an_unknown_query_parameter_is_422_naming_it_instead_of_widening_the_result(client, auth, db):
    """`?from=` (the parameter is `start_date`) used to return every session."""
    client.post("/api/v1/focus-sessions/start", json={}, headers=auth("q"))

    typo = client.get("/api/v1/focus-sessions/history?from=2030-01-01&page_size=5", headers=auth("q"))
    right = client.get("/api/v1/focus-sessions/history?start_date=2030-01-01", headers=auth("q"))

    assert_error_body(typo, 422)
    assert typo.json["errors"] == {"query": {"from": ["Unknown field."]}}
    assert right.status_code == 200 and right.json["items"] == []


@pytest.mark.parametrize("op", select_ops(lambda op: True))
def test_every_endpoint_refuses_a_query_parameter_it_does_not_declare(client, auth, op):
    response = client.open(
        op.path() + "?bogus=1&also=2", method=op.method, json={}, headers=headers_for(op, auth)
    )

    assert_error_body(response, 422)
    assert response.json["errors"] == {"query": {"also": ["Unknown field."], "bogus": ["Unknown field."]}}


# --- Admin trigger: dates out of range, the documented maximum of user ids ------------------------


def test_trigger_with_a_week_out_of_range_is_422_and_starts_nothing(client, db):
    for week_of in ("0001-01-01", "1969-12-29"):
        response = client.post("/api/v1/admin/intelligence/trigger", json={"week_of": week_of}, headers=ADMIN)
        assert_error_body(response, 422)
        assert response.json["errors"] == {"json": {"week_of": ["must be on or after 1970-01-05"]}}
    assert db.scalar(select(func.count()).select_from(JobRun)) == 0


def test_trigger_accepts_the_documented_maximum_of_10000_user_ids(client, db, worker):
    """10,000 ids of ordinary length are over the 64 KiB limit of other endpoints: it was a 413."""
    ids = [f"user-{uuid.uuid4()}" for _ in range(10_000)]
    body = json.dumps({"user_ids": ids, "week_of": "2026-01-05"})
    assert len(body) > 64 * 1024

    response = client.post(
        "/api/v1/admin/intelligence/trigger", data=body, content_type="application/json", headers=ADMIN
    )

    assert response.status_code == 202, response.json
    run = wait_for(
        lambda: (
            db.scalars(select(JobRun).where(JobRun.status.not_in(("pending", "running")))).first()
            or db.rollback()
        ),
        timeout=120,
    )
    assert run.job_name == "intelligence.weekly" and run.status == "success"
    assert run.skipped == 10_000  # none of them exists


def test_trigger_reads_10000_ids_of_the_longest_length_and_refuses_one_more(client):
    """The limit of this endpoint holds 10,000 ids of 128 characters: 10,001 of them is the
    schema's 422, not a 413."""
    ids = [f"{n:0128d}" for n in range(10_001)]

    response = client.post("/api/v1/admin/intelligence/trigger", json={"user_ids": ids}, headers=ADMIN)

    assert_error_body(response, 422)
    assert "user_ids" in response.json["errors"]["json"]


# --- Tasks: arguments out of range, a crash inside a run ------------------------------------------


@shared_task(base=FocusTask, bind=True, name=CRASH_JOB, ignore_result=False)
def crash_inside_run(self: FocusTask, trigger: str = "manual") -> None:
    """Test-only: starts a run the way every family does, then dies of an unexpected error."""
    db = db_session()
    fanout.start(db, CRASH_JOB, trigger=trigger, task_id=self.request.id, slot=None, scope=None)
    db.commit()
    raise OverflowError("date value out of range")


@pytest.mark.usefixtures("worker")
def test_a_task_that_crashes_leaves_its_run_failed_with_the_error(celery_app, client, db):
    """The weekly run of week 0001-01-01 died with OverflowError and its job_runs row stayed
    `running` forever (and showed so on /ops). Now every task's open runs fail with its error."""
    result = celery_app.send_task(CRASH_JOB)
    with pytest.raises(OverflowError):
        result.get(timeout=60, propagate=True)

    runs = wait_for(
        lambda: client.get(f"/api/v1/admin/job-runs?job={CRASH_JOB}", headers=ADMIN).json["items"], timeout=30
    )
    (run,) = runs
    assert run["status"] == "failed"
    assert run["error"] == "OverflowError: date value out of range"
    assert run["finished_at"] is not None


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    "task,kwargs,named",
    [
        ("intelligence.weekly", {"week_of": "0001-01-01"}, "week_of must be on or after 1970-01-05"),
        (
            "intelligence.generate",
            {"user_ids": ["a"], "week_of": "0001-01-01"},
            "week_of must be on or after",
        ),
        (
            "ops.archive_failed_analysis_jobs",
            {"older_than_days": 10**12},
            "older_than_days must be a whole number",
        ),
    ],
)
def test_task_arguments_out_of_range_fail_the_task_naming_the_argument(celery_app, db, task, kwargs, named):
    """Both were OverflowErrors deep inside the task; the weekly one left its run `running`."""
    result = celery_app.send_task(task, kwargs=kwargs)

    with pytest.raises(Exception) as error:
        result.get(timeout=60, propagate=True)

    assert named in str(error.value)
    assert db.scalar(select(func.count()).select_from(JobRun).where(JobRun.status == "running")) == 0
    # The worker lives on.
    assert celery_app.send_task("ops.archive_failed_analysis_jobs").get(timeout=60)["archived"] == 0


# --- Every error has a body -----------------------------------------------------------------------


def test_the_429_of_a_manual_refresh_has_the_full_error_body(client, auth, db):
    """The rate-limited answer lost its body ({"status": "Too Many Requests"} only)."""
    make_user(db, "limited")
    make_analysed_job(db, "limited", "work", minutes_ago=30)

    limited = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=auth("limited"))

    assert_error_body(limited, 429)
    assert limited.json["status"] == "Too Many Requests"
    assert 1790 <= limited.json["retry_after"] <= 1800
    assert limited.headers["Retry-After"] == str(limited.json["retry_after"])
    assert "retry in" in limited.json["message"]


def test_errors_of_every_kind_share_one_body_shape(client, auth):
    cases = [
        (client.get("/api/v1/no-such-endpoint", headers=auth("e")), 404),
        (client.delete("/api/v1/tasks", headers=auth("e")), 405),
        (client.get("/api/v1/focus-sessions/active"), 401),
        (client.get("/api/v1/admin/job-runs", headers={"X-API-Key": "x" * 32}), 403),
        (client.post("/api/v1/tasks", data="{", content_type="application/json", headers=auth("e")), 422),
        (client.post("/api/v1/tasks", data="x", content_type="text/plain", headers=auth("e")), 415),
        (
            client.post(
                "/api/v1/tasks", data="x" * 70_000, content_type="application/json", headers=auth("e")
            ),
            413,
        ),
    ]
    for response, status in cases:
        assert_error_body(response, status)
