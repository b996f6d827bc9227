"""Consolidation throughput: our set-based atomic replace against the seed's naive loop.

Both sides consolidate the same messy profiles with the same deterministic plan; they differ in
how they read and write. Naive (seed 003): per entity, per category a delete and then one insert
and commit per attribute, with an ORM read per entity. Ours: one snapshot, one compare-and-set,
one multi-row upsert and one delete, in one transaction. Run: `.venv/bin/python -m bench.maintenance`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select

from focus_app.db import Database
from focus_app.devservers import start_postgres
from focus_app.migrate import upgrade
from focus_app.models.attributes import ProfileAttribute
from focus_app.services.attributes import consolidation, store

ENTITIES = int(os.environ.get("BENCH_ENTITIES", "300"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROFILE = [
    ("fact", "Location", "Ohio"),
    ("fact", "home_location", "lives in Columbus, Ohio"),
    ("misc", "full name", "Sam Rivera"),
    ("misc", "mood", "tired today"),
    ("misc", "greeting", "hi there"),
    ("interest", "hobby", "hiking"),
    ("interest", "likesHiking", "Likes hiking."),
    ("preference", "favourite colour", "blue"),
    ("preference", "favorite_color", "green"),
    ("communication", "tone", "prefers short answers"),
    ("health", "allergy", "allergic to peanuts"),
    ("misc", "last_action", "asked about the weather"),
]


def seed(db, prefix: str) -> list[str]:
    ids = [f"{prefix}{n}" for n in range(ENTITIES)]
    for entity_id in ids:
        for day, (category, key, value) in enumerate(PROFILE):
            store._bump_version(db, entity_id, "user")
            db.execute(
                insert(ProfileAttribute).values(
                    entity_id=entity_id,
                    entity_type="user",
                    category=category,
                    key=key,
                    value=value,
                    confidence=0.7,
                    source="chat",
                    updated_at=T0 + timedelta(days=day),
                )
            )
    db.commit()
    return ids


def ours(db, ids: list[str]) -> None:
    for entity_id in ids:
        version, before = store.snapshot(db, entity_id, "user")
        plan = consolidation.consolidate(before)
        store.apply_plan(db, entity_id, "user", version, plan)
        db.commit()


def naive(db, ids: list[str]) -> None:
    """The seed's ProfileMaintenanceService.run with delete_attributes_by_category + set_attribute."""
    for entity_id in ids:
        rows = db.scalars(select(ProfileAttribute).where(ProfileAttribute.entity_id == entity_id)).all()
        before = [
            consolidation.Attribute(
                r.category, r.key, r.value, r.confidence, r.source, r.updated_at, str(r.id)
            )
            for r in rows
        ]
        plan = consolidation.consolidate(before)
        for category in sorted({a.category for a in plan.after}):
            db.execute(
                delete(ProfileAttribute).where(
                    ProfileAttribute.entity_id == entity_id, ProfileAttribute.category == category
                )
            )
            db.commit()
            for a in (a for a in plan.after if a.category == category):
                db.add(
                    ProfileAttribute(
                        entity_id=entity_id,
                        entity_type="user",
                        category=category,
                        key=a.key,
                        value=a.value,
                        confidence=a.confidence,
                        source=a.source,
                        updated_at=a.updated_at,
                    )
                )
                db.commit()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="focus-bench-") as scratch:
        url = os.environ.get("BENCH_DATABASE_URL")
        server = None
        if not url:
            server = start_postgres(Path(scratch) / "pg", "focus_bench")
            url = server.url
        upgrade(url)
        database = Database.connect(url)
        db = database.session()
        try:
            timings = {}
            for name, run in (("naive", naive), ("ours", ours)):
                ids = seed(db, f"{name}-")
                started = time.perf_counter()
                run(db, ids)
                timings[name] = time.perf_counter() - started
            for name, seconds in timings.items():
                print(
                    f"{name:6s} {ENTITIES} profiles x {len(PROFILE)} attributes: {seconds:6.2f} s "
                    f"({ENTITIES / seconds:7.1f} profiles/s)"
                )
            print(f"speed-up: {timings['naive'] / timings['ours']:.1f}x")
        finally:
            db.close()
            database.engine.dispose()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
