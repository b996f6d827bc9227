"""The run-time enable switch, checked by every periodic task before it does anything."""

from __future__ import annotations

from celery import Task

from focus_app.extensions import db_session
from focus_app.services import job_runs, job_switches


def disabled_beat_run(task: Task, trigger: str, interval_seconds: int) -> dict | None:
    """For a disabled job's beat run: record it as skipped and return the task's result."""
    db = db_session()
    slot = job_runs.beat_slot(interval_seconds)
    if not job_switches.skip_if_disabled(db, task.name, trigger=trigger, slot=slot, task_id=task.request.id):
        return None
    db.commit()
    return {"status": "skipped", "reason": "job disabled"}
