"""What PostgreSQL recorded about a task's work, for `GET /jobs/{task_id}`.

Celery's result backend lives in Redis: a restart can lose a state, and a task cancelled by a broker
connection loss is marked REVOKED there even when its run then finished through its redelivered or
republished units. The job run the task started is the truth; Celery's state is the fallback for
tasks that record no run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from focus_app.models import JobRun

# Run status -> the Celery state word the endpoint answers.
STATE_OF_RUN = {
    "pending": "STARTED",
    "running": "STARTED",
    "success": "SUCCESS",
    "skipped": "SUCCESS",
    "failed": "FAILURE",
    "cancelled": "REVOKED",
}


@dataclass(frozen=True)
class RecordedState:
    state: str
    result: dict[str, Any]  # the run's parameters and counts
    error: str | None


def recorded_state(db: Session, task_id: str) -> RecordedState | None:
    """The state of the run this task started; None when it started none."""
    run = db.scalars(select(JobRun).where(JobRun.task_id == task_id)).one_or_none()
    db.rollback()
    if run is None:
        return None
    result = {
        **(run.result or {}),
        "run_id": str(run.id),
        "status": run.status,
        "units_total": run.units_total,
        "units_done": run.units_done,
        "succeeded": run.succeeded,
        "failed": run.failed,
        "skipped": run.skipped,
    }
    return RecordedState(STATE_OF_RUN[run.status], result, run.error)
