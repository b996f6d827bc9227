"""Every periodic job honours its run-time switch: a disabled beat run is recorded as skipped."""

from __future__ import annotations

from datetime import date

import pytest

from beat_schedule import build_beat_schedule
from focus_app.services.intelligence import job as weekly_job
from tests.conftest import TEST_ADMIN_KEY, make_settings

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
# intelligence.weekly first checks its Monday window, so it is tested through its service below.
TASK_TRIGGERED = sorted(
    entry["task"]
    for entry in build_beat_schedule(make_settings("postgresql://x/y", "redis://x")).values()
    if entry["task"] != "intelligence.weekly"
)


def disable(client, job_name: str) -> None:
    response = client.put(f"/api/v1/admin/job-settings/{job_name}", json={"enabled": False}, headers=ADMIN)
    assert response.status_code == 200


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("job_name", TASK_TRIGGERED)
def test_a_disabled_periodic_task_records_a_skipped_run(client, celery_app, job_name):
    disable(client, job_name)

    result = celery_app.send_task(job_name, kwargs={"trigger": "beat"}).get(timeout=60)

    assert result["status"] == "skipped"
    runs = client.get(f"/api/v1/admin/job-runs?job={job_name}", headers=ADMIN).json
    assert [(run["status"], run["result"]) for run in runs["items"]] == [
        ("skipped", {"reason": "job disabled"})
    ]


def test_the_weekly_job_honours_its_switch(client, db):
    disable(client, "intelligence.weekly")

    plan = weekly_job.plan_weekly(db, trigger="beat", task_id=None, week_of=date(2026, 11, 16), batch_size=10)

    assert plan.run_id is None and plan.summary["reason"] == "job disabled"
    runs = client.get("/api/v1/admin/job-runs?job=intelligence.weekly", headers=ADMIN).json
    assert [run["status"] for run in runs["items"]] == ["skipped"]
