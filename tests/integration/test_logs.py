"""Log lines carry the request or the task they belong to."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from focus_app import logs
from tests.integration.conftest import wait_for


def test_api_lines_carry_the_request_id_and_user(app, client, auth, caplog, monkeypatch):
    headers = {**auth("logged"), "X-Request-ID": "req-123"}
    session_id = client.post("/api/v1/focus-sessions/start", json={}, headers=headers).json["id"]
    # With Redis unreachable the end request logs a warning: it must say which request it was.
    monkeypatch.setitem(app.extensions, "redis", redis.Redis(port=1, socket_connect_timeout=0.2))
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.WARNING):
        response = client.post(
            f"/api/v1/focus-sessions/{session_id}/end", json={"was_completed": True}, headers=headers
        )

    assert response.headers["X-Request-ID"] == "req-123"
    (warning,) = [r for r in caplog.records if "not flagged" in r.getMessage()]
    assert warning.context["request_id"] == "req-123"
    assert warning.context["user_id"] == "logged"
    assert len(client.get("/api/v1/health").headers["X-Request-ID"]) == 32


def test_json_lines_include_the_bound_fields():
    logs.clear()
    logs.bind(task_id="t-1", task_name="focus.compute_profiles", run_id="r-9")
    record = logging.LogRecord("focus_profile_update", logging.INFO, __file__, 1, "batch %s", ("7",), None)
    logs.ContextFilter().filter(record)

    line = json.loads(logs.JsonFormatter().format(record))

    assert line["message"] == "batch 7"
    assert (line["task_id"], line["task_name"], line["run_id"]) == ("t-1", "focus.compute_profiles", "r-9")
    logs.clear()


@pytest.mark.usefixtures("worker")
def test_task_lines_carry_task_id_name_and_run(celery_app, caplog):
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.INFO, logger="focus_profile_update"):
        result = celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["nobody"]})
        summary = result.get(timeout=30)

    started = [r for r in caplog.records if r.getMessage().startswith("profile update started")]
    assert started, caplog.text
    context = started[0].context
    assert context["task_id"] == result.id
    assert context["task_name"] == "focus.update_profiles"
    assert context["run_id"] == summary["run_id"]


def _task_records(caplog, task_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "context", {}).get("task_id") == task_id]


@pytest.mark.usefixtures("worker")
def test_profile_batch_lines_carry_run_unit_and_the_user_of_a_one_user_batch(celery_app, caplog, db):
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.INFO, logger="focus_profile_update"):
        summary = celery_app.send_task("focus.update_profiles", kwargs={"user_ids": ["solo"]}).get(timeout=30)
        finished = wait_for(
            lambda: [r for r in caplog.records if r.getMessage().startswith("profile update finished")]
        )

    context = finished[0].context
    assert context["task_name"] == "focus.compute_profiles"
    assert (context["run_id"], context["unit"], context["user_id"]) == (summary["run_id"], 0, "solo")
    assert _task_records(caplog, context["task_id"])


@pytest.mark.usefixtures("worker")
def test_analysis_job_lines_carry_job_and_user(client, auth, caplog):
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.INFO, logger="analysis_jobs"):
        job = client.post("/api/v1/profile/analyze", json={"context_type": "work"}, headers=auth("ann")).json
        job_id = job["job"]["id"]
        wait_for(lambda: [r for r in caplog.records if f"completed analysis job={job_id}" in r.getMessage()])

    task_lines = [r for r in caplog.records if r.context.get("task_name") == "analysis.run"]
    assert task_lines
    for record in task_lines:
        assert (record.context["job_id"], record.context["user_id"]) == (job_id, "ann")
        assert record.context["task_id"]


@pytest.mark.usefixtures("worker")
def test_intelligence_lines_carry_the_run(celery_app, caplog):
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.INFO, logger="weekly_intelligence"):
        result = celery_app.send_task("intelligence.weekly", kwargs={"user_ids": ["ivy"]})
        summary = result.get(timeout=60)

    lines = _task_records(caplog, result.id)
    assert any(r.getMessage().startswith("weekly intelligence started") for r in lines), caplog.text
    for record in lines:
        assert record.context["task_name"] == "intelligence.weekly"
        assert record.context["run_id"] == summary["run_id"]


def test_every_request_writes_an_access_line_with_its_request_id(client, auth, caplog):
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.INFO, logger="focus_app.access"):
        client.get("/api/v1/focus-sessions/active", headers={**auth("acc"), "X-Request-ID": "req-a"})
        client.get("/api/v1/focus-sessions/active", headers={"X-Request-ID": "req-b"})

    first, second = [r for r in caplog.records if r.name == "focus_app.access"]
    assert first.context == {
        "request_id": "req-a",
        "user_id": "acc",
        "method": "GET",
        "path": "/api/v1/focus-sessions/active",
        "status": 200,
    }
    assert (second.context["request_id"], second.context["status"]) == ("req-b", 401)
    assert "user_id" not in second.context


@pytest.mark.usefixtures("worker")
def test_maintenance_lines_carry_run_and_user(celery_app, caplog):
    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.INFO):
        result = celery_app.send_task("maintenance.consolidate_profile", args=["mona"])
        summary = result.get(timeout=60)

    lines = _task_records(caplog, result.id)
    assert any(r.getMessage().startswith("profile consolidated") for r in lines), caplog.text
    for record in lines:
        assert record.context["task_name"] == "maintenance.consolidate_profile"
        assert record.context["user_id"] == "mona"
        assert record.context["run_id"]
    assert summary["entity_id"] == "mona"


def test_lines_logged_after_a_request_do_not_carry_its_ids(client, auth, caplog):
    caplog.handler.addFilter(logs.ContextFilter())
    client.get("/api/v1/focus-sessions/active", headers={**auth("gone"), "X-Request-ID": "req-old"})
    with caplog.at_level(logging.WARNING):
        logging.getLogger("elsewhere").warning("between requests")

    (line,) = [r for r in caplog.records if r.getMessage() == "between requests"]
    assert line.context == {}
