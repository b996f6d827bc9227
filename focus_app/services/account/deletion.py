"""Delete an account: every row keyed by the user in one transaction, children before the user
row, so jobs that are writing the same user at that moment wait for it or see it gone; then the
user's Redis keys."""

from __future__ import annotations

import logging
from typing import Any

import redis
from sqlalchemy import CursorResult, Result, Table, delete
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from focus_app.models import Base, User
from focus_app.models.attributes import ProfileAttribute, ProfileEntity
from focus_app.services.intelligence import cache as brief_cache
from focus_app.services.jobkit import keys

log = logging.getLogger(__name__)

DELETE_ATTEMPTS = 3


def user_tables() -> tuple[list[Table], list[Table]]:
    """Every table with a user_id column, so new families are covered: those with a foreign key to
    users (children first), and those without one (e.g. job_retry_queue)."""
    tables = [table for table in reversed(Base.metadata.sorted_tables) if "user_id" in table.c]
    linked = [t for t in tables if any(fk.column.table.name == "users" for fk in t.c.user_id.foreign_keys)]
    return linked, [t for t in tables if t not in linked]


def delete_account(db: Session, client: redis.Redis, user_id: str) -> dict[str, int]:
    """Delete every row of the user in one transaction, then their Redis keys.

    Rows are deleted children first and the user row last: a job that is writing this user holds
    row locks the deletion waits for, and a job that starts after the user row is gone finds no
    user (foreign keys, and the existence checks of the job families) and skips. A deadlock with
    such a job is retried; the whole deletion is idempotent.
    """
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        try:
            counts = _delete_rows(db, user_id)
            break
        except OperationalError as exc:
            db.rollback()
            if attempt == DELETE_ATTEMPTS or getattr(exc.orig, "pgcode", None) != "40P01":
                raise
            log.warning("account deletion of %s hit a deadlock, attempt %d, retrying", user_id, attempt)
    cleared = clear_user_keys(client, user_id)
    log.info("account deleted user=%s rows=%s redis_keys=%d", user_id, counts, cleared)
    return counts


def _delete_rows(db: Session, user_id: str) -> dict[str, int]:
    """Linked tables, then the user row (which blocks new writers of the user), then unlinked ones."""
    linked, unlinked = user_tables()
    counts: dict[str, int] = {}

    def delete_from(table: Table) -> None:
        deleted = _deleted(db.execute(delete(table).where(table.c.user_id == user_id)))
        if deleted:
            counts[table.name] = deleted

    # Profile attributes (seed 003) are keyed by entity: the entity row first, the order in which a
    # consolidation locks it, so one in flight finishes first and a later one finds nothing to update.
    for model in (ProfileEntity, ProfileAttribute):
        deleted = _deleted(
            db.execute(delete(model).where(model.entity_type == "user", model.entity_id == user_id))
        )
        if deleted:
            counts[model.__tablename__] = deleted
    for table in linked:
        delete_from(table)
    counts["users"] = _deleted(db.execute(delete(User).where(User.id == user_id)))
    for table in unlinked:
        delete_from(table)
    db.commit()
    return counts


def _deleted(result: Result[Any]) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


def clear_user_keys(client: redis.Redis, user_id: str) -> int:
    """The user's flag, profile cache and brief caches; their ids are escaped in every key, so a
    user's pattern matches no one else's keys (a user called `keys` or `stats` included)."""
    exact = [keys.update_flag(user_id), keys.profile_cache(user_id)]
    try:
        brief_cache.invalidate_user_cache(client, user_id)
        names = exact + list(client.scan_iter(match=keys.user_briefs_pattern(user_id), count=1000))
        return client.delete(*names)
    except redis.RedisError as exc:
        # Every key has a TTL and the rows are gone, so nothing can be served from them for long.
        log.warning("redis unavailable, keys of deleted user %s left to expire: %s", user_id, exc)
        return 0
