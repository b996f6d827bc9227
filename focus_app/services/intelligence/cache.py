"""The brief cache of seed 004: read-through views of briefs in Redis, hit/miss counts for the
health check, and invalidation when a brief is regenerated or the user's data changes."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.jobkit import keys
from focus_app.services.jobkit.errors import NotFound
from focus_app.services.jobkit.lua import DROP_TRACKED_LUA, Script

log = logging.getLogger("weekly_intelligence")


def brief_view(
    db: Session, client: redis.Redis, user_id: str, week_of: date | None, *, ttl_seconds: int
) -> dict[str, Any]:
    """The caller's brief for a week (None = latest): Redis first, then PostgreSQL."""
    key = keys.brief(user_id, week_of or "latest")
    try:
        raw = client.get(key)
        _count(client, "hits" if raw else "misses")
    except redis.RedisError as exc:
        log.warning("redis unavailable, reading brief from PostgreSQL: %s", exc)
        raw = None
    if raw:
        return json.loads(raw)
    query = select(WeeklyBrief).where(WeeklyBrief.user_id == user_id)
    if week_of is None:
        query = query.order_by(WeeklyBrief.week_of.desc()).limit(1)
    else:
        query = query.where(WeeklyBrief.week_of == week_of)
    brief = db.scalars(query).first()
    if brief is None:
        what = "yet" if week_of is None else f"for the week of {week_of.isoformat()}"
        raise NotFound(f"no weekly brief {what}")
    view = {
        "week_of": brief.week_of.isoformat(),
        "week_stats": brief.week_stats,
        "main_story": brief.main_story,
        "insights": brief.insights,
        "patterns": brief.patterns,
        "velocity": brief.velocity,
        "story_source": brief.story_source,
        "generated_at": brief.generated_at.isoformat(),
    }
    try:
        _CACHE_SET(
            keys=[key, keys.brief_tracking(user_id)], args=[json.dumps(view), ttl_seconds], client=client
        )
    except redis.RedisError as exc:
        log.warning("redis unavailable, brief not cached: %s", exc)
    return view


def _count(client: redis.Redis, outcome: str) -> None:
    key = keys.brief_stats(datetime.now(UTC).date())
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, outcome, 1)
    pipe.expire(key, keys.BRIEF_STATS_TTL_SECONDS)
    pipe.execute()


def invalidate_user_cache(client: redis.Redis, user_id: str) -> None:
    """Every cached brief of the user (their data changed)."""
    try:
        _CACHE_DROP(keys=[keys.brief_tracking(user_id)], args=[1], client=client)
    except redis.RedisError as exc:
        log.warning("redis unavailable, brief cache of %s left to expire: %s", user_id, exc)


def invalidate_briefs(client: redis.Redis, written: list[tuple[str, date]]) -> None:
    """After regeneration: the week's brief and the user's 'latest' pointer."""
    if not written:
        return
    names = [keys.brief(u, week_of) for u, week_of in written] + [keys.brief(u, "latest") for u, _ in written]
    try:
        client.delete(*names)
    except redis.RedisError as exc:
        log.warning("redis unavailable, %d cached briefs left to expire: %s", len(written), exc)


# KEYS: cache key, tracking set; ARGV: value, ttl.
_CACHE_SET = Script(
    """
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    redis.call('SADD', KEYS[2], KEYS[1])
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    """
)

# KEYS: the tracking set; ARGV: 1 (where the sets start).
_CACHE_DROP = Script(DROP_TRACKED_LUA)
