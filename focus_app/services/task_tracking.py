"""Who started which Celery task, so `GET /jobs/{task_id}` answers only its owner.

Kept in Redis beside the task's result, with the same lifetime; the owner is a user id or
"admin" for tasks started with the admin key.
"""

from __future__ import annotations

import redis

ADMIN_OWNER = "admin"
OWNER_PREFIX = "focus:task_owner:"


def record_owner(client: redis.Redis, task_id: str, owner: str, ttl_seconds: int) -> None:
    client.set(f"{OWNER_PREFIX}{task_id}", owner, ex=ttl_seconds)


def owner_of(client: redis.Redis, task_id: str) -> str | None:
    raw = client.get(f"{OWNER_PREFIX}{task_id}")
    return raw.decode() if raw else None
