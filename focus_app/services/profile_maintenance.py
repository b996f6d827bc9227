"""Profile maintenance (seed 003): attribute writes, discovery, atomic replace, job runs.

Every attribute write bumps the entity's `attributes_version` first (one lock order: entity row,
then attribute rows), so discovery is one indexed query and a consolidation that read an older
version is refused instead of overwriting a newer write. The replace itself is one transaction:
upsert the planned set, delete the rest, move the versions; a crash or a bad model answer leaves
the old attributes untouched, unlike the seed's delete-then-insert per category.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.models import JobRun
from focus_app.models.maintenance import ProfileAttribute, ProfileEntity
from focus_app.services import consolidation, job_runs, job_switches
from focus_app.services.consolidation import Attribute, Plan
from focus_app.services.errors import InvalidInput, NotFound
from focus_app.services.llm import LLMError, LLMProvider, MalformedOutput, extract_json

JOB_NAME = "maintenance.consolidate_profiles"
ENTITY_JOB_NAME = "maintenance.consolidate_profile"
log = logging.getLogger("profile_maintenance")


class ConsolidationFailed(Exception):
    """The consolidator's answer was unusable; nothing was changed and the error is recorded."""


# --- attributes, as users and services write them -------------------------------------------


def _bump_version(db: Session, entity_id: str, entity_type: str) -> None:
    """Lock the entity row first (the same order as a consolidation) and mark it changed."""
    db.execute(
        pg_insert(ProfileEntity)
        .values(entity_id=entity_id, entity_type=entity_type, attributes_version=1)
        .on_conflict_do_update(
            index_elements=["entity_id", "entity_type"],
            set_={"attributes_version": ProfileEntity.attributes_version + 1},
        )
    )


def list_attributes(
    db: Session, entity_id: str, entity_type: str, *, category: str | None, page: int, page_size: int
) -> tuple[list[ProfileAttribute], int]:
    query = select(ProfileAttribute).where(
        ProfileAttribute.entity_id == entity_id, ProfileAttribute.entity_type == entity_type
    )
    if category is not None:
        query = query.where(ProfileAttribute.category == category)
    total = db.scalar(select(func.count()).select_from(query.subquery()))
    items = db.scalars(
        query.order_by(ProfileAttribute.category, ProfileAttribute.key)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return list(items), total or 0


def set_attribute(
    db: Session,
    entity_id: str,
    entity_type: str,
    *,
    category: str,
    key: str,
    value: str,
    confidence: float,
    source: str,
    max_per_entity: int,
) -> tuple[ProfileAttribute, bool]:
    """Create the attribute, or restate it (same category and key); True when created."""
    _bump_version(db, entity_id, entity_type)
    exists = db.scalar(
        select(ProfileAttribute.id).where(
            ProfileAttribute.entity_id == entity_id,
            ProfileAttribute.entity_type == entity_type,
            ProfileAttribute.category == category,
            ProfileAttribute.key == key,
        )
    )
    if exists is None:
        count = db.scalar(
            select(func.count()).where(
                ProfileAttribute.entity_id == entity_id, ProfileAttribute.entity_type == entity_type
            )
        )
        if count >= max_per_entity:
            db.rollback()
            raise InvalidInput(
                f"at most {max_per_entity} attributes per profile",
                {"key": [f"profile already holds {count} attributes; delete some or consolidate"]},
            )
    values = {"value": value, "confidence": confidence, "source": source, "updated_at": func.now()}
    attribute_id = db.execute(
        pg_insert(ProfileAttribute)
        .values(entity_id=entity_id, entity_type=entity_type, category=category, key=key, **values)
        .on_conflict_do_update(
            constraint="uq_profile_attributes_entity_id_entity_type_category_key", set_=values
        )
        .returning(ProfileAttribute.id)
    ).scalar_one()
    db.commit()
    return db.get(ProfileAttribute, attribute_id, populate_existing=True), exists is None


def delete_attribute(db: Session, entity_id: str, entity_type: str, attribute_id: uuid.UUID) -> None:
    _bump_version(db, entity_id, entity_type)
    deleted = db.execute(
        delete(ProfileAttribute)
        .where(
            ProfileAttribute.id == attribute_id,
            ProfileAttribute.entity_id == entity_id,
            ProfileAttribute.entity_type == entity_type,
        )
        .returning(ProfileAttribute.id)
    ).scalar_one_or_none()
    if deleted is None:
        db.rollback()
        raise NotFound(f"no attribute {attribute_id}")
    db.commit()


# --- planning --------------------------------------------------------------------------------


def snapshot(db: Session, entity_id: str, entity_type: str) -> tuple[int, list[Attribute]]:
    """The entity's version and attributes, read in one statement-consistent transaction."""
    version = db.scalar(
        select(ProfileEntity.attributes_version).where(
            ProfileEntity.entity_id == entity_id, ProfileEntity.entity_type == entity_type
        )
    )
    rows = db.scalars(
        select(ProfileAttribute).where(
            ProfileAttribute.entity_id == entity_id, ProfileAttribute.entity_type == entity_type
        )
    ).all()
    attributes = [
        Attribute(r.category, r.key, r.value, r.confidence, r.source, r.updated_at, str(r.id)) for r in rows
    ]
    return version or 0, attributes


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
        return Plan(f"llm:{provider.name}", before, list(before), error=f"consolidator unavailable: {exc}")


# --- applying --------------------------------------------------------------------------------


def _replace(db: Session, entity_id: str, entity_type: str, after: list[Attribute]) -> None:
    """Upsert the planned set (only rows that differ) and delete every other row of the entity."""
    if after:
        insert = pg_insert(ProfileAttribute).values(
            [
                {
                    "entity_id": entity_id,
                    "entity_type": entity_type,
                    "category": a.category,
                    "key": a.key,
                    "value": a.value,
                    "confidence": a.confidence,
                    "source": a.source,
                    "updated_at": a.updated_at,
                }
                for a in after
            ]
        )
        changing = ("value", "confidence", "source", "updated_at")
        db.execute(
            insert.on_conflict_do_update(
                constraint="uq_profile_attributes_entity_id_entity_type_category_key",
                set_={name: insert.excluded[name] for name in changing},
                where=or_(
                    *(
                        getattr(ProfileAttribute, name).is_distinct_from(insert.excluded[name])
                        for name in changing
                    )
                ),
            )
        )
    stale = delete(ProfileAttribute).where(
        ProfileAttribute.entity_id == entity_id, ProfileAttribute.entity_type == entity_type
    )
    if after:
        stale = stale.where(
            tuple_(ProfileAttribute.category, ProfileAttribute.key).not_in(
                [(a.category, a.key) for a in after]
            )
        )
    db.execute(stale)


def _mark_consolidated(
    db: Session, entity_id: str, entity_type: str, seen_version: int, changed: bool
) -> bool:
    """Compare-and-set on the version the plan was made from; False when a write came in between.

    A replace moves the version too, so a second consolidation planned from the old rows is refused.
    """
    new_version = ProfileEntity.attributes_version + (1 if changed else 0)
    row = db.execute(
        update(ProfileEntity)
        .where(
            ProfileEntity.entity_id == entity_id,
            ProfileEntity.entity_type == entity_type,
            ProfileEntity.attributes_version == seen_version,
        )
        .values(
            attributes_version=new_version, consolidated_version=new_version, last_consolidated_at=func.now()
        )
        .returning(ProfileEntity.entity_id)
    ).scalar_one_or_none()
    return row is not None


def apply_plan(db: Session, entity_id: str, entity_type: str, seen_version: int, plan: Plan) -> str:
    """In the caller's transaction: "applied", "unchanged", or "stale" (nothing written)."""
    if not _mark_consolidated(db, entity_id, entity_type, seen_version, plan.changed):
        return "stale"
    if not plan.changed:
        return "unchanged"
    _replace(db, entity_id, entity_type, plan.after)
    return "applied"


# --- the jobs --------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """What the periodic task publishes: this run's entities plus lost units of earlier runs."""

    run_id: uuid.UUID | None
    units: list[tuple[uuid.UUID, int, list[Any]]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


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
    republish_after_seconds: int,
) -> RunPlan:
    if job_switches.skip_if_disabled(db, JOB_NAME, trigger=trigger, slot=slot, task_id=task_id):
        db.commit()
        log.info("profile maintenance skipped: job disabled")
        return RunPlan(None, summary={"status": "skipped", "reason": "job disabled"})
    start = job_runs.start_run(db, JOB_NAME, trigger, slot=slot, task_id=task_id, scope="changed entities")
    run = start.run
    if run is None:
        db.rollback()
        return RunPlan(None, summary={"status": "skipped", "reason": f"slot {slot} already ran"})
    logs.bind(run_id=str(run.id))
    if not start.created:
        units = job_runs.resumed_units(db, run.id)
        db.commit()
        return RunPlan(run.id, units, {"status": "resumed", "run_id": str(run.id)})

    entities = discover(db)
    job_runs.add_units(db, run, [[entity_id, entity_type, dry_run] for entity_id, entity_type in entities])
    lost = job_runs.stale_pending_units(db, JOB_NAME, republish_after_seconds)
    if not entities:
        job_runs.finish_run(db, run, result={"entities": 0, "dry_run": dry_run})
    db.commit()
    log.info("profile maintenance started run=%s trigger=%s entities=%d", run.id, trigger, len(entities))
    units = [(run.id, n, [e, t, dry_run]) for n, (e, t) in enumerate(entities)] + lost
    summary = {
        "status": "started",
        "run_id": str(run.id),
        "entities": len(entities),
        "republished": len(lost),
        "dry_run": dry_run,
    }
    return RunPlan(run.id, units, summary)


def consolidate_entity(
    db: Session,
    provider: LLMProvider | None,
    entity_id: str,
    entity_type: str,
    *,
    dry_run: bool,
    trigger: str,
    task_id: str | None,
    run_id: uuid.UUID | None = None,
    unit_no: int | None = None,
) -> dict[str, Any]:
    """Consolidate one entity. Within a periodic run its unit is claimed in the same transaction
    as the replace (exactly once in effect); alone, it records its own job run."""
    user_id = entity_id if entity_type == "user" else None
    logs.bind(run_id=str(run_id) if run_id else None, unit=unit_no, user_id=user_id, entity_type=entity_type)
    own_run = None
    if run_id is None:
        start = job_runs.start_run(
            db, ENTITY_JOB_NAME, trigger, task_id=task_id, scope=f"{entity_type}:{entity_id}"
        )
        own_run = start.run
        logs.bind(run_id=str(own_run.id) if own_run else None)
        if own_run is not None and own_run.finished_at is not None:
            db.rollback()
            return {"status": "duplicate", "run_id": str(own_run.id)}
        db.commit()

    seen_version, before = snapshot(db, entity_id, entity_type)
    db.rollback()  # no transaction held open across a model call
    plan = make_plan(before, provider)

    if run_id is not None and not job_runs.claim_unit(
        db, run_id, unit_no, status="failed" if plan.error else "done"
    ):
        db.rollback()
        return {"status": "duplicate", "run_id": str(run_id), "unit": unit_no}
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
    if dry_run:
        result["plan"] = plan.as_dict()
    _record(db, own_run, run_id, outcome, result, plan.error)
    db.commit()
    log.info(
        "profile consolidated entity=%s:%s outcome=%s counts=%s",
        entity_type,
        entity_id,
        outcome,
        plan.counts(),
    )
    return result


def _record(
    db: Session,
    own_run: JobRun | None,
    run_id: uuid.UUID | None,
    outcome: str,
    result: dict,
    error: str | None,
) -> None:
    counts = (
        {"failed": 1} if outcome == "failed" else {"skipped": 1} if outcome == "stale" else {"succeeded": 1}
    )
    if run_id is not None:
        job_runs.count_unit(
            db, run_id, error=error and f"{result['entity_type']}:{result['entity_id']}: {error}", **counts
        )
    elif own_run is not None:
        db.execute(update(JobRun).where(JobRun.id == own_run.id).values(error=error, **counts))
        db.refresh(own_run)
        summary = {k: v for k, v in result.items() if k != "plan"}
        job_runs.finish_run(
            db, own_run, status="failed" if outcome == "failed" else "success", result=summary
        )


def record_failure(
    db: Session,
    entity_id: str,
    entity_type: str,
    error: str,
    *,
    run_id: uuid.UUID | None,
    unit_no: int | None,
    trigger: str,
    task_id: str | None,
) -> None:
    """An error the task could not retry away: count it in the run; the attributes were not touched."""
    db.rollback()
    error = error[:2000]
    result = {"status": "failed", "entity_id": entity_id, "entity_type": entity_type, "error": error}
    if run_id is not None:
        if not job_runs.claim_unit(db, run_id, unit_no, status="failed"):
            db.rollback()
            return
        _record(db, None, run_id, "failed", result, error)
    else:
        run = job_runs.start_run(
            db, ENTITY_JOB_NAME, trigger, task_id=task_id, scope=f"{entity_type}:{entity_id}"
        ).run
        if run is None or run.finished_at is not None:
            db.rollback()
            return
        _record(db, run, None, "failed", result, error)
    db.commit()
    log.error("profile consolidation failed entity=%s:%s: %s", entity_type, entity_id, error)
