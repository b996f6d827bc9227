"""Every periodic job honours its run-time switch: a disabled beat run is recorded as skipped."""

from __future__ import annotations

import pytest

from beat_schedule import build_beat_schedule
from tests.conftest import TEST_ADMIN_KEY, make_settings

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
TASK_TRIGGERED = sorted(
    entry["task"] for entry in build_beat_schedule(make_settings("postgresql://x/y", "redis://x")).values()
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
