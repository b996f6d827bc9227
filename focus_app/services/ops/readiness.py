"""Readiness of the stores the API needs (the broker's is checked where Celery lives)."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

OK, UNREACHABLE = "ok", "unreachable"


def database_state(db: Session) -> str:
    try:
        db.execute(text("SELECT 1"))
        db.rollback()
        return OK
    except SQLAlchemyError as exc:
        db.rollback()
        log.warning("readiness: database unreachable: %s", exc)
        return UNREACHABLE


def redis_state(client: redis.Redis) -> str:
    try:
        client.ping()
        return OK
    except redis.RedisError as exc:
        log.warning("readiness: redis unreachable: %s", exc)
        return UNREACHABLE
