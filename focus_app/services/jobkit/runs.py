"""Job-run rows: the bookkeeping under every periodic or manual job (the protocol is fanout.py).

A run is split into units written to PostgreSQL before their messages are published. A unit is
claimed with a compare-and-set in the same transaction as its work, so a duplicate delivery is a
no-op and the run's counters add up exactly once; a unit whose message was lost stays pending and
is published again (services/ops/inflight.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models import JobRun, JobRunUnit
from focus_app.services.jobkit.errors import Conflict, NotFound
from focus_app.services.jobkit.pagination import Page, paginate


def database_now(db: Session) -> datetime:
    """PostgreSQL's clock: beat slots are decided on it, so hosts whose clocks disagree (a beat or
    worker minutes off) agree on which slot a fire belongs to."""
    return db.execute(select(func.now())).scalar_one()


def beat_slot(interval_seconds: int, now: datetime) -> str:
    """The schedule slot a periodic run belongs to; a slot runs once however often it fires (two
    beats, a backlog of fires after an outage)."""
    return str(int(now.timestamp() // interval_seconds))


@dataclass(frozen=True)
class RunStart:
    run: JobRun | None  # None: the slot already ran under another task
    created: bool


def start_run(
    db: Session,
    job_name: str,
    trigger: str,
    *,
    slot: str | None = None,
    task_id: str | None = None,
    scope: str | None = None,
) -> RunStart:
    """Insert the run, or find it again when the same task is delivered a second time."""
    run_id = db.execute(
        pg_insert(JobRun)
        .values(job_name=job_name, trigger=trigger, slot=slot, task_id=task_id, scope=scope)
        .on_conflict_do_nothing()
        .returning(JobRun.id)
    ).scalar_one_or_none()
    if run_id is not None:
        return RunStart(db.get(JobRun, run_id), created=True)
    existing = None
    if task_id is not None:
        taken = db.execute(
            update(JobRun)
            .where(JobRun.task_id == task_id, JobRun.status == "pending")
            .values(status="running", started_at=func.now())
            .returning(JobRun.id)
        ).scalar_one_or_none()
        if taken is not None:
            return RunStart(db.get(JobRun, taken, populate_existing=True), created=True)
        existing = db.scalars(select(JobRun).where(JobRun.task_id == task_id)).one_or_none()
    return RunStart(existing, created=False)


def request_run(
    db: Session,
    job_name: str,
    trigger: str,
    *,
    task_id: str,
    kwargs: dict[str, Any],
    slot: str | None,
    scope: str | None,
) -> None:
    """A run asked for before its task is published (PostgreSQL first): `pending` with the task's
    kwargs until the task takes it over (start_run); `stale_requests` finds it again when its
    message never arrived. A slot that already has a run records nothing (the task will skip it,
    as it would have anyway). Not committed."""
    db.execute(
        pg_insert(JobRun)
        .values(
            job_name=job_name, trigger=trigger, slot=slot, task_id=task_id, scope=scope, status="pending",
            result={"requested": kwargs},
        )
        .on_conflict_do_nothing()
    )  # fmt: skip


@dataclass(frozen=True)
class RequestedRun:
    """A run recorded before its task was published; its job name is its task's name."""

    job_name: str
    task_id: str
    kwargs: dict[str, Any]


def stale_requests(db: Session, older_than_seconds: int) -> list[RequestedRun]:
    """Runs still pending this long after they were asked for: their message was never published,
    or was lost. Publishing one again under its task id is safe (the first delivery takes the run
    over; a later one finds it taken and resumes it)."""
    rows = db.execute(
        select(JobRun.job_name, JobRun.task_id, JobRun.result)
        .where(
            JobRun.status == "pending",
            JobRun.task_id.is_not(None),
            JobRun.started_at < func.now() - timedelta(seconds=older_than_seconds),
        )
        .order_by(JobRun.started_at)
    ).all()
    db.rollback()
    return [RequestedRun(row.job_name, row.task_id, (row.result or {}).get("requested", {})) for row in rows]


def add_units(db: Session, run: JobRun, payloads: list[list[Any]]) -> None:
    if payloads:
        db.execute(
            insert(JobRunUnit),
            [{"run_id": run.id, "unit_no": n, "payload": p} for n, p in enumerate(payloads)],
        )
    run.units_total = len(payloads)


def pending_units(db: Session, run_id: uuid.UUID) -> list[tuple[int, list[Any]]]:
    rows = db.execute(
        select(JobRunUnit.unit_no, JobRunUnit.payload)
        .where(JobRunUnit.run_id == run_id, JobRunUnit.status == "pending")
        .order_by(JobRunUnit.unit_no)
    ).all()
    return [(row.unit_no, row.payload) for row in rows]


def claim_unit(db: Session, run_id: uuid.UUID, unit_no: int, status: str = "done") -> bool:
    """Compare-and-set pending -> status; False when another delivery already took it or its run
    was cancelled (once the cancel has committed, no unit of the run starts).

    A unit that does not exist (a hand-typed run id or unit number) is NotFound, not a duplicate.
    """
    claimed = db.execute(
        update(JobRunUnit)
        .where(
            JobRunUnit.run_id == run_id,
            JobRunUnit.unit_no == unit_no,
            JobRunUnit.status == "pending",
            select(JobRun.id).where(JobRun.id == run_id, JobRun.status != "cancelled").exists(),
        )
        .values(status=status, finished_at=func.now())
        .returning(JobRunUnit.unit_no)
    ).scalar_one_or_none()
    if claimed is None and db.get(JobRunUnit, (run_id, unit_no)) is None:
        raise NotFound(f"job run {run_id} has no unit {unit_no}")
    return claimed is not None


def unit_state(db: Session, run_id: uuid.UUID, unit_no: int) -> tuple[str, str]:
    """(unit status, run status); NotFound for a unit that does not exist."""
    row = db.execute(
        select(JobRunUnit.status, JobRun.status)
        .join(JobRun, JobRun.id == JobRunUnit.run_id)
        .where(JobRunUnit.run_id == run_id, JobRunUnit.unit_no == unit_no)
    ).one_or_none()
    if row is None:
        raise NotFound(f"job run {run_id} has no unit {unit_no}")
    return row[0], row[1]


def note_unit_error(db: Session, run_id: uuid.UUID, unit_no: int, error: str) -> None:
    """What went wrong inside a unit (e.g. per user), kept on its row for the run's verification."""
    db.execute(
        update(JobRunUnit)
        .where(JobRunUnit.run_id == run_id, JobRunUnit.unit_no == unit_no)
        .values(error=error)
    )


def count_unit(
    db: Session,
    run_id: uuid.UUID,
    *,
    succeeded: int = 0,
    failed: int = 0,
    skipped: int = 0,
    error: str | None = None,
) -> JobRun | None:
    """Add a claimed unit's counts; returns the run when this unit was its last one (the caller
    finishes it). A unit that was running when its run was cancelled is counted, and the run
    stays cancelled."""
    run = db.execute(
        update(JobRun)
        .where(JobRun.id == run_id)
        .values(
            units_done=JobRun.units_done + 1,
            succeeded=JobRun.succeeded + succeeded,
            failed=JobRun.failed + failed,
            skipped=JobRun.skipped + skipped,
            error=func.coalesce(JobRun.error, error),
        )
        .returning(JobRun)
    ).scalar_one_or_none()
    if run is None or run.status == "cancelled" or run.units_done < run.units_total:
        return None
    return run


def _duration_ms() -> ColumnElement[Any]:
    """The run's duration up to this statement (clock time, not the transaction's start)."""
    return func.floor(func.extract("epoch", func.clock_timestamp() - JobRun.started_at) * 1000)


def finish_run(db: Session, run: JobRun, status: str | None = None, result: dict | None = None) -> None:
    """Close the run: failed when any unit failed, else success (or the status given)."""
    row = db.execute(
        update(JobRun)
        .where(JobRun.id == run.id)
        .values(
            status=status or ("failed" if run.failed else "success"),
            finished_at=func.now(),
            duration_ms=_duration_ms(),
            result=result if result is not None else JobRun.result,
        )
        .returning(JobRun.status, JobRun.duration_ms, JobRun.finished_at)
    ).one()
    run.status, run.duration_ms, run.finished_at = row.status, row.duration_ms, row.finished_at


def fail_open_runs(db: Session, task_id: str, error: str) -> int:
    """Finish as failed every run this task started that is still open; how many there were."""
    return len(
        db.execute(
            update(JobRun)
            .where(JobRun.task_id == task_id, JobRun.status.in_(OPEN_RUN_STATUSES))
            .values(
                status="failed",
                finished_at=func.now(),
                duration_ms=_duration_ms(),
                error=func.coalesce(JobRun.error, error[:2000]),
            )
            .returning(JobRun.id)
        ).all()
    )


OPEN_RUN_STATUSES = ("pending", "running")
CANCELLED_ERROR = "cancelled by an operator"
PendingUnit = tuple[uuid.UUID, int, Any]  # run id, unit number, payload


def cancel_run(db: Session, run_id: uuid.UUID) -> tuple[JobRun, list[PendingUnit]]:
    """An open run ends `cancelled` with the counts so far, and its pending units with it.

    Not committed. Units a worker holds right now are skipped (their row is locked): they finish
    and are counted, or roll back whole and stay pending in a cancelled run, where no claim and no
    sweeper takes them (`cancel_orphaned_units` tidies them up later).
    """
    run = db.scalars(
        select(JobRun).where(JobRun.id == run_id).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    if run is None:
        raise NotFound(f"job run {run_id} not found")
    if run.status not in OPEN_RUN_STATUSES:
        raise Conflict(f"job run {run_id} is {run.status}: only a running run can be cancelled")
    cancelled = _cancel_units(db, JobRunUnit.run_id == run_id)
    row = db.execute(
        update(JobRun)
        .where(JobRun.id == run_id)
        .values(
            status="cancelled",
            finished_at=func.now(),
            duration_ms=_duration_ms(),
            error=func.coalesce(JobRun.error, CANCELLED_ERROR),
            result={**(run.result or {}), "cancelled_units": len(cancelled)},
        )
        .returning(JobRun)
        .execution_options(populate_existing=True)
    ).scalar_one()
    return row, cancelled


def cancel_orphaned_units(db: Session, job_name: str) -> list[PendingUnit]:
    """Units left pending in the job's cancelled runs (running when the run was cancelled, then
    rolled back) are cancelled too. Not committed."""
    cancelled_runs = select(JobRun.id).where(JobRun.job_name == job_name, JobRun.status == "cancelled")
    return _cancel_units(db, JobRunUnit.run_id.in_(cancelled_runs))


def _cancel_units(db: Session, which: ColumnElement[bool]) -> list[PendingUnit]:
    """pending -> cancelled for the units that no worker holds (SKIP LOCKED: never waits)."""
    free = (
        select(JobRunUnit.run_id, JobRunUnit.unit_no)
        .where(which, JobRunUnit.status == "pending")
        .with_for_update(skip_locked=True)
    )
    rows = db.execute(
        update(JobRunUnit)
        .where(tuple_(JobRunUnit.run_id, JobRunUnit.unit_no).in_(free), JobRunUnit.status == "pending")
        .values(status="cancelled", finished_at=func.now())
        .returning(JobRunUnit.run_id, JobRunUnit.unit_no, JobRunUnit.payload)
    ).all()
    return sorted((row.run_id, row.unit_no, row.payload) for row in rows)


def list_runs(
    db: Session,
    *,
    job: str | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
    page: int,
    page_size: int,
) -> Page[JobRun]:
    """Runs newest first, filtered by job, status and start time (`since` inclusive)."""
    query = select(JobRun)
    if job:
        query = query.where(JobRun.job_name == job)
    if status:
        query = query.where(JobRun.status == status)
    if since:
        query = query.where(JobRun.started_at >= since)
    if until:
        query = query.where(JobRun.started_at < until)
    return paginate(db, query, (JobRun.started_at.desc(), JobRun.id), page, page_size)
