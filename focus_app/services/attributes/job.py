"""The consolidation jobs (seed 003): the periodic run finds every entity whose attributes changed
and fans them out; one entity's consolidation plans (deterministic or by a model) and applies the
plan in one transaction, counted exactly once within its run."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.models.attributes import ProfileEntity
from focus_app.services.attributes import consolidation
from focus_app.services.attributes.consolidation import Attribute, Plan
from focus_app.services.attributes.store import apply_plan, snapshot
from focus_app.services.jobkit import fanout, runs
from focus_app.services.jobkit.errors import RecordedFailure
from focus_app.services.jobkit.llm import LLMError, LLMProvider, MalformedOutput, Throttled, extract_json

log = logging.getLogger("profile_maintenance")

JOB_NAME = "maintenance.consolidate_profiles"
ENTITY_JOB_NAME = "maintenance.consolidate_profile"
log = logging.getLogger("profile_maintenance")


class ConsolidationFailed(RecordedFailure):
    """The consolidator's answer was unusable; nothing was changed and the error is recorded."""


class WaitingForTurn(Exception):  # noqa: N818 (a reason, not an error)
    """Why maintenance.consolidate_profile is published again (Flower shows it with RETRY)."""


def make_plan(before: list[Attribute], provider: LLMProvider | None) -> Plan:
    """Deterministic by default; with a provider, seed 003's prompt. Unusable output: a plan
    that changes nothing and carries the error. A provider that fails raises LLMError."""
    if provider is None or not before:
        return consolidation.consolidate(before)
    name = f"llm:{provider.name}"
    completion = provider.complete(
        consolidation.LLM_SYSTEM, consolidation.llm_prompt(before), max_tokens=4096
    )
    try:
        return consolidation.plan_from_model(before, extract_json(completion.text), name)
    except MalformedOutput as exc:
        log.warning("unusable consolidation output (%s): %.500s", exc, exc.raw or completion.text)
        return Plan(name, before, list(before), error=f"malformed model output: {exc}")


def dry_run(db: Session, provider: LLMProvider | None, entity_id: str, entity_type: str) -> Plan:
    """The plan without writing anything; an unreachable provider is reported in the plan."""
    _, before = snapshot(db, entity_id, entity_type)
    db.rollback()
    try:
        return make_plan(before, provider)
    except LLMError as exc:
        name = f"llm:{provider.name}" if provider else "deterministic"
        return Plan(name, before, list(before), error=f"consolidator unavailable: {exc}")


def discover(db: Session) -> list[tuple[str, str]]:
    """Every entity whose attributes changed since its last consolidation (one indexed query)."""
    rows = db.execute(
        select(ProfileEntity.entity_id, ProfileEntity.entity_type)
        .where(ProfileEntity.attributes_version != ProfileEntity.consolidated_version)
        .order_by(ProfileEntity.entity_type, ProfileEntity.entity_id)
    ).all()
    return [(row.entity_id, row.entity_type) for row in rows]


def plan_run(
    db: Session,
    *,
    trigger: str,
    task_id: str | None,
    slot: str | None,
    dry_run: bool,
) -> fanout.Plan:
    """The run and one unit per changed entity; the task publishes `maintenance.consolidate_profile`
    per unit (its payload is that task's positional arguments)."""

    def new_run() -> fanout.NewRun:
        entities = discover(db)
        result = {"entities": len(entities), "dry_run": dry_run}
        return fanout.NewRun(
            [[entity_id, entity_type, dry_run] for entity_id, entity_type in entities], result, result
        )

    plan = fanout.plan(
        db,
        JOB_NAME,
        trigger=trigger,
        task_id=task_id,
        slot=slot,
        scope="changed entities",
        new_run=new_run,
    )
    if plan.started:
        log.info(
            "profile maintenance started run=%s trigger=%s entities=%d",
            plan.run_id,
            trigger,
            plan.summary["entities"],
        )
    else:
        log.info(
            "profile maintenance %s: %s", plan.summary["status"], plan.summary.get("reason", plan.run_id)
        )
    return plan


def consolidate_entity(
    db: Session,
    provider: LLMProvider | None,
    entity_id: str,
    entity_type: str,
    *,
    dry_run: bool,
    trigger: str,
    task_id: str | None,
    unit: fanout.Unit | None = None,
) -> dict[str, Any]:
    """Consolidate one entity, its unit claimed in the same transaction as the replace (exactly
    once in effect). Outside a periodic run it is a run of one unit of its own. A model call whose
    turn is far away answers `waiting` with `retry_in`, leaving the unit to a later delivery."""
    user_id = entity_id if entity_type == "user" else None
    logs.bind(**fanout.log_context(unit), user_id=user_id, entity_type=entity_type)
    if unit is None:
        own = _own_run(db, entity_id, entity_type, dry_run=dry_run, trigger=trigger, task_id=task_id)
        if not own.units:
            return {"status": "duplicate", "run_id": str(own.run_id)} if own.run_id else own.summary
        unit = own.units[0]
    elif (refusal := fanout.refusal(db, unit)) is not None:
        return refusal  # a cancelled run's entity costs no model call

    seen_version, before = snapshot(db, entity_id, entity_type)
    db.rollback()  # no transaction held open across a model call
    try:
        plan = make_plan(before, provider)
    except Throttled as exc:
        # The model's turn is far away: nothing claimed or written, the task comes back then.
        log.info("profile consolidation entity=%s:%s %s", entity_type, entity_id, exc)
        return {"status": "waiting", "retry_in": exc.retry_in, "detail": str(exc)}

    if not fanout.claim(db, unit, status="failed" if plan.error else "done"):
        return fanout.refused(db, unit)
    if plan.error:
        outcome = "failed"
    elif dry_run:
        outcome = "dry_run"
    else:
        outcome = apply_plan(db, entity_id, entity_type, seen_version, plan)
    result = {
        "status": outcome,
        "entity_id": entity_id,
        "entity_type": entity_type,
        "consolidator": plan.consolidator,
        **plan.counts(),
        "error": plan.error,
    }
    _count(db, unit, result)
    db.commit()
    log.info(
        "profile consolidated entity=%s:%s outcome=%s counts=%s",
        entity_type,
        entity_id,
        outcome,
        plan.counts(),
    )
    return {**result, "plan": plan.as_dict()} if dry_run else result


def record_failure(
    db: Session,
    entity_id: str,
    entity_type: str,
    error: str,
    *,
    unit: fanout.Unit | None,
    trigger: str,
    task_id: str | None,
) -> None:
    """An error the task could not retry away: count it in the run; the attributes were not touched."""
    db.rollback()
    error = error[:2000]
    if unit is None:
        own = _own_run(db, entity_id, entity_type, dry_run=False, trigger=trigger, task_id=task_id)
        if not own.units:
            return
        unit = own.units[0]
    result = {"status": "failed", "entity_id": entity_id, "entity_type": entity_type, "error": error}
    if not fanout.claim(db, unit, status="failed"):
        return
    _count(db, unit, result)
    db.commit()
    log.error("profile consolidation failed entity=%s:%s: %s", entity_type, entity_id, error)


def _own_run(
    db: Session, entity_id: str, entity_type: str, *, dry_run: bool, trigger: str, task_id: str | None
) -> fanout.Plan:
    """A consolidation started alone records a run of one unit; redelivered, it finds that run
    again (and its unit, unless it was done)."""
    result = {"entity_id": entity_id, "entity_type": entity_type, "dry_run": dry_run}
    return fanout.plan(
        db,
        ENTITY_JOB_NAME,
        trigger=trigger,
        task_id=task_id,
        slot=None,
        scope=f"{entity_type}:{entity_id}",
        new_run=lambda: fanout.NewRun([[entity_id, entity_type, dry_run]], result),
    )


def _count(db: Session, unit: fanout.Unit, result: dict[str, Any]) -> None:
    """One entity's outcome in its run; a run of its own keeps the outcome as its result."""
    outcome, error = result["status"], result["error"]
    counts = fanout.Counts(
        failed=int(outcome == "failed"),
        skipped=int(outcome == "stale"),
        succeeded=int(outcome not in ("failed", "stale")),
    )
    fanout.count(
        db,
        unit,
        counts,
        error=error and f"{result['entity_type']}:{result['entity_id']}: {error}",
        finish=lambda db, run: runs.finish_run(
            db, run, result=result if run.job_name == ENTITY_JOB_NAME else None
        ),
    )
