"""Who started which Celery task, so `GET /jobs/{task_id}` answers only its owner.

Kept in Redis beside the task's result, with the same lifetime; the owner is a user id or
"admin" for tasks started with the admin key.
"""

from __future__ import annotations

import redis

from focus_app.services.jobkit import keys

ADMIN_OWNER = "admin"


def record_owner(client: redis.Redis, task_id: str, owner: str, ttl_seconds: int) -> None:
    client.set(keys.task_owner(task_id), owner, ex=ttl_seconds)


def owner_of(client: redis.Redis, task_id: str) -> str | None:
    raw: bytes | None = client.get(keys.task_owner(task_id))  # type: ignore[assignment]  # bytes client
    return raw.decode() if raw else None
