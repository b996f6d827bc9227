"""Readiness of the stores the API needs (the broker's is checked where Celery lives)."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from focus_app.services.jobkit import keys

log = logging.getLogger(__name__)

OK, UNREACHABLE, REFUSES_WRITES = "ok", "unreachable", "refuses_writes"


def database_state(db: Session) -> str:
    try:
        db.execute(text("SELECT 1"))
        db.rollback()
        return OK
    except SQLAlchemyError as exc:
        db.rollback()
        log.warning("readiness: database unreachable: %s", exc)
        return UNREACHABLE


def redis_state(client: redis.Redis) -> tuple[str, str | None]:
    """Whether Redis takes a write (a PING passes on a Redis that refuses every write: a full
    disk's MISCONF, NOREPLICAS, OOM, READONLY), and Redis's own words when it does not."""
    try:
        client.set(keys.WRITE_PROBE, "1", ex=keys.WRITE_PROBE_TTL_SECONDS)
        return OK, None
    except redis.ResponseError as exc:
        log.warning("readiness: redis refuses writes: %s", exc)
        return REFUSES_WRITES, str(exc)
    except redis.RedisError as exc:
        log.warning("readiness: redis unreachable: %s", exc)
        return UNREACHABLE, str(exc)
