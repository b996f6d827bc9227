"""Profile attributes (seed 003) as users and services write them, and the atomic replace a
consolidation applies.

Every attribute write bumps the entity's `attributes_version` first (one lock order: entity row,
then attribute rows), so discovery is one indexed query and a consolidation that read an older
version is refused instead of overwriting a newer write. The replace itself is one transaction:
upsert the planned set, delete the rest, move the versions; a crash or a bad model answer leaves
the old attributes untouched, unlike the seed's delete-then-insert per category.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models.attributes import ProfileAttribute, ProfileEntity
from focus_app.services.attributes.consolidation import Attribute, Plan
from focus_app.services.jobkit.errors import InvalidInput, NotFound
from focus_app.services.jobkit.pagination import Page, paginate


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
) -> Page[ProfileAttribute]:
    query = select(ProfileAttribute).where(
        ProfileAttribute.entity_id == entity_id, ProfileAttribute.entity_type == entity_type
    )
    if category is not None:
        query = query.where(ProfileAttribute.category == category)
    return paginate(db, query, (ProfileAttribute.category, ProfileAttribute.key), page, page_size)


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
        count = db.execute(
            select(func.count()).where(
                ProfileAttribute.entity_id == entity_id, ProfileAttribute.entity_type == entity_type
            )
        ).scalar_one()
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
    return db.get_one(ProfileAttribute, attribute_id, populate_existing=True), exists is None


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
