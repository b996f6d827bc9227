"""Log lines carry the request or the task they belong to."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from focus_app import logs


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
