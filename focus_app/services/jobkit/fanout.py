"""The fan-out protocol every batch job follows (profiles, weekly briefs, consolidation), once.

start  a beat fire of a disabled job is recorded as `skipped`; a slot that already ran is skipped;
       a redelivered planner finds its own run again.
plan   the run row and its units are written in one transaction before any message is published
       (the caller publishes `Plan.units` after this commit); a redelivered planner resumes the
       run's pending units (every message of a unit carries the unit's own task id, `task_id`); a
       unit whose message is gone (Redis restarted or flushed, its worker killed) is published again
       by the one sweeper, `ops.republish_lost_units`. A run that found no work may leave no row at all (a
       frequent tick must not flood the history).
claim  a unit is taken by compare-and-set in the transaction that writes its results, so a
       duplicate delivery changes nothing and a killed transaction leaves it pending.
count  the unit's counts are added to its run in that same transaction; the last unit finishes
       the run (through the family's `finish`, e.g. verification of the weekly run).
fail   a unit whose task is out of retries is claimed as failed and counted, so its run finishes.
crash  a task that fails for good finishes the runs it started that are still open as failed, with
       its error: no run stays `running` after the task that owns it has died of an exception.
cancel an operator stops an open run: it ends `cancelled` with the counts so far, its pending units
       are cancelled, no claim takes a unit of it once the cancel has committed, and no sweeper or
       resumed planner publishes them again. Units running at that moment finish (and are
       counted) or roll back whole. A family whose planning promised something to the units'
       subjects (the weekly schedule) gives it back through its `release`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.models import JobRun
from focus_app.services.jobkit import runs, switches

Finish = Callable[[Session, JobRun], None]


@dataclass(frozen=True)
class Unit:
    """One unit of a run: what its message carries (run id, unit number) and its payload."""

    run_id: uuid.UUID
    unit_no: int
    payload: Any = None


def task_id(unit: Unit) -> str:
    """The task id of every message of this unit, however often it is published: a sweeper can
    tell whether the unit's message still exists, and the delivery limit counts all its deliveries."""
    return str(uuid.uuid5(unit.run_id, str(unit.unit_no)))


def log_context(unit: Unit | None) -> dict[str, Any]:
    """The run and unit every log line of a unit's work carries."""
    return {"run_id": str(unit.run_id) if unit else None, "unit": unit.unit_no if unit else None}


# Called in the transaction that cancels units: what the family gives back for them.
Release = Callable[[Session, list[Unit]], None]


@dataclass(frozen=True)
class Counts:
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class NewRun:
    """A family's plan for a run it starts: a payload per unit and what the run row keeps."""

    payloads: list[Any]
    result: dict[str, Any]  # the run's parameters and totals, kept in job_runs.result
    summary: dict[str, Any] = field(default_factory=dict)  # more keys for the planning task's result
    result_if_empty: dict[str, Any] | None = None  # the finished run's result when there are no units
    keep_if_empty: bool = True  # False: a run without units leaves no row (what new_run wrote stays)


@dataclass
class Plan:
    """What the planning task publishes after the commit, and the summary it returns."""

    run_id: uuid.UUID | None
    units: list[Unit] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def started(self) -> bool:
        return self.summary.get("status") == "started"


@dataclass(frozen=True)
class Started:
    run: JobRun
    resumed: bool  # the same task delivered again: its run already exists


def start(
    db: Session, job_name: str, *, trigger: str, task_id: str | None, slot: str | None, scope: str | None
) -> Started | Plan:
    """The run this task works under, or a Plan with the reason nothing runs (committed)."""
    if switches.skip_if_disabled(db, job_name, trigger=trigger, slot=slot, task_id=task_id):
        db.commit()
        return Plan(None, summary={"status": "skipped", "reason": "job disabled"})
    begun = runs.start_run(db, job_name, trigger, slot=slot, task_id=task_id, scope=scope)
    if begun.run is None:
        db.rollback()
        return Plan(None, summary={"status": "skipped", "reason": f"slot {slot} already ran"})
    logs.bind(run_id=str(begun.run.id))
    return Started(begun.run, resumed=not begun.created)


def plan(
    db: Session,
    job_name: str,
    *,
    trigger: str,
    task_id: str | None,
    slot: str | None,
    scope: str | None,
    new_run: Callable[[], NewRun],
    release: Release | None = None,
) -> Plan:
    """Start (or resume) the run and write its units; the caller publishes `units` after this.

    Units a cancel left pending (they were running, then rolled back) are cancelled first and
    given back through `release`, before `new_run` looks for work."""
    started = start(db, job_name, trigger=trigger, task_id=task_id, slot=slot, scope=scope)
    if isinstance(started, Plan):
        return started
    run = started.run
    if started.resumed:
        if run.status == "cancelled":
            db.rollback()
            reason = "its run was cancelled by an operator"
            return Plan(None, summary={"status": "cancelled", "run_id": str(run.id), "reason": reason})
        units = [Unit(run.id, unit_no, payload) for unit_no, payload in runs.pending_units(db, run.id)]
        db.commit()
        return Plan(run.id, units, {"status": "resumed", "run_id": str(run.id), **(run.result or {})})

    orphans = [Unit(*row) for row in runs.cancel_orphaned_units(db, job_name)]
    if orphans and release is not None:
        release(db, orphans)
    planned = new_run()
    if not planned.payloads and not planned.keep_if_empty:
        db.delete(run)
        db.commit()
        return Plan(None, summary={"status": "idle", **planned.summary})
    runs.add_units(db, run, planned.payloads)
    run.result = planned.result
    if not planned.payloads:
        runs.finish_run(db, run, result=planned.result_if_empty or planned.result)
    db.commit()
    units = [Unit(run.id, unit_no, payload) for unit_no, payload in enumerate(planned.payloads)]
    return Plan(run.id, units, {"status": "started", "run_id": str(run.id), **planned.summary})


def claim(db: Session, unit: Unit, status: str = "done") -> bool:
    """Take the unit (pending -> status) in the caller's transaction; False (rolled back) when
    another delivery already took it or its run was cancelled. A unit that does not exist is
    NotFound."""
    if runs.claim_unit(db, unit.run_id, unit.unit_no, status):
        return True
    db.rollback()
    return False


def refusal(db: Session, unit: Unit) -> dict[str, Any] | None:
    """None while a claim could still take the unit; else the task's answer, `cancelled` (its run
    was) or `duplicate` (another delivery took it). Asked before work that costs something
    outside the transaction (a model call), so a cancelled run's unit never starts it."""
    unit_status, run_status = runs.unit_state(db, unit.run_id, unit.unit_no)
    db.rollback()
    if "cancelled" in (unit_status, run_status):
        status = "cancelled"
    elif unit_status != "pending":
        status = "duplicate"
    else:
        return None
    return {"status": status, "run_id": str(unit.run_id), "unit": unit.unit_no}


def refused(db: Session, unit: Unit) -> dict[str, Any]:
    """A task's answer for a unit its claim did not take."""
    return refusal(db, unit) or {"status": "duplicate", "run_id": str(unit.run_id), "unit": unit.unit_no}


def count(
    db: Session,
    unit: Unit,
    counts: Counts,
    *,
    error: str | None = None,
    unit_error: str | None = None,
    finish: Finish | None = None,
) -> JobRun | None:
    """Add a claimed unit's counts (`error`: the run's first error; `unit_error`: kept on the unit);
    the run when this unit was its last one (then finished)."""
    if unit_error is not None:
        runs.note_unit_error(db, unit.run_id, unit.unit_no, unit_error)
    run = runs.count_unit(
        db, unit.run_id, succeeded=counts.succeeded, failed=counts.failed, skipped=counts.skipped, error=error
    )
    if run is not None:
        (finish or _finish)(db, run)
    return run


def fail(
    db: Session,
    unit: Unit,
    counts: Counts,
    error: str,
    *,
    unit_error: str | None = None,
    finish: Finish | None = None,
) -> JobRun | None:
    """A unit out of retries: counted as failed (committed) unless a delivery already took it."""
    if not claim(db, unit, status="failed"):
        return None
    run = count(db, unit, counts, error=error[:2000], unit_error=unit_error, finish=finish)
    db.commit()
    return run


def crashed(db: Session, task_id: str | None, error: str) -> int:
    """The task `task_id` failed for good: its open runs are failed with `error` (committed); how
    many there were."""
    failed = runs.fail_open_runs(db, task_id, error) if task_id else 0
    db.commit()
    return failed


def cancel(db: Session, run_id: uuid.UUID, releases: dict[str, Release]) -> JobRun:
    """An operator stops an open run (committed): NotFound, or Conflict when it is not open. The
    pending units are cancelled and given back through the job's release, in one transaction."""
    run, cancelled = runs.cancel_run(db, run_id)
    release = releases.get(run.job_name)
    if cancelled and release is not None:
        release(db, [Unit(*row) for row in cancelled])
    db.commit()
    return run


def _finish(db: Session, run: JobRun) -> None:
    runs.finish_run(db, run)
