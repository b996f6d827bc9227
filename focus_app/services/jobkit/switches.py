"""Run-time enable switches of the periodic jobs (seed 003's `enabled`), kept in PostgreSQL.

A job without a row is enabled. A disabled job still leaves a trace: its scheduled (beat) runs are
recorded as `skipped` in runs. Manual and API triggers are an operator's explicit request and
run regardless.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models.jobs import JobSetting
from focus_app.services.jobkit import runs
from focus_app.services.jobkit.errors import NotFound


def is_enabled(db: Session, job_name: str) -> bool:
    enabled = db.scalar(select(JobSetting.enabled).where(JobSetting.job_name == job_name))
    return enabled is not False


def set_enabled(db: Session, job_name: str, enabled: bool, periodic_jobs: set[str]) -> JobSetting:
    """Switch a job of the schedule on or off at run time."""
    if job_name not in periodic_jobs:
        raise NotFound(f"no periodic job {job_name!r}")
    db.execute(
        pg_insert(JobSetting)
        .values(job_name=job_name, enabled=enabled)
        .on_conflict_do_update(
            index_elements=["job_name"], set_={"enabled": enabled, "updated_at": func.now()}
        )
    )
    setting = db.execute(
        select(JobSetting).where(JobSetting.job_name == job_name).execution_options(populate_existing=True)
    ).scalar_one()
    db.commit()
    return setting


def list_settings(db: Session, job_names: set[str]) -> list[dict]:
    """The switch of every named job plus every job that has a stored switch."""
    stored = {row.job_name: row for row in db.scalars(select(JobSetting))}
    return [
        {
            "job_name": name,
            "enabled": stored[name].enabled if name in stored else True,
            "updated_at": stored[name].updated_at if name in stored else None,
        }
        for name in sorted(job_names | stored.keys())
    ]


def skip_if_disabled(
    db: Session, job_name: str, *, trigger: str, slot: str | None = None, task_id: str | None = None
) -> bool:
    """True for a disabled job's beat run, recorded as skipped (the caller commits).

    A slot that already has a run stays as it was.
    """
    if trigger != "beat" or is_enabled(db, job_name):
        return False
    run = runs.start_run(db, job_name, trigger, slot=slot, task_id=task_id, scope="disabled").run
    if run is not None:
        runs.finish_run(db, run, status="skipped", result={"reason": "job disabled"})
    return True
