"""Redis keys and the operations on them. Everything here is rebuildable from PostgreSQL.

Redis is an accelerator: when it is down these helpers log the degradation and report it, so
writes to PostgreSQL still succeed and the periodic job falls back to the database rule.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Sequence
from typing import Any

import redis

log = logging.getLogger(__name__)

UPDATE_FLAG_PREFIX = "focus:needs_update:"
PROFILE_CACHE_PREFIX = "focus:profile:"


def update_flag_key(user_id: str) -> str:
    return f"{UPDATE_FLAG_PREFIX}{user_id}"


def profile_cache_key(user_id: str) -> str:
    return f"{PROFILE_CACHE_PREFIX}{user_id}"


def flag_for_update(
    client: redis.Redis, user_id: str, version: int, ttl_seconds: int, *, drop_tracked: Sequence[str] = ()
) -> bool:
    """Flag a user whose sessions reached `version`; the flag only ever moves forward.

    `drop_tracked`: sets of cache keys made stale by the same change, dropped with their members
    in the same round trip.
    """
    try:
        _RAISE_FLAG(
            keys=[update_flag_key(user_id), *drop_tracked], args=[version, ttl_seconds, 2], client=client
        )
        return True
    except redis.RedisError as exc:
        log.warning("redis unavailable, user %s not flagged (the database rule catches it): %s", user_id, exc)
        return False


def flagged_user_ids(client: redis.Redis) -> list[str]:
    """All users with an update flag; raises RedisError for the caller to degrade."""
    prefix_length = len(UPDATE_FLAG_PREFIX)
    return [
        key.decode()[prefix_length:] for key in client.scan_iter(match=f"{UPDATE_FLAG_PREFIX}*", count=1000)
    ]


def clear_flags_and_cache(client: redis.Redis, processed: Sequence[tuple[str, int | None]]) -> bool:
    """Clear each user's flag unless it was raised past the version just processed.

    A session that ends while its profile is computed raises the flag to a newer version, so
    that flag survives and the user is computed again: the flag race of seed 000 cannot drop it.
    A version of None (no such user) clears the flag unconditionally.
    """
    if not processed:
        return True
    keys = [update_flag_key(user_id) for user_id, _ in processed]
    keys += [profile_cache_key(user_id) for user_id, _ in processed]
    versions = ["" if version is None else version for _, version in processed]
    try:
        _CLEAR_FLAGS(keys=keys, args=versions, client=client)
        return True
    except redis.RedisError as exc:
        log.warning("redis unavailable, %d flags left for the next run: %s", len(processed), exc)
        return False


def cached_profile(client: redis.Redis, user_id: str) -> dict[str, Any] | None:
    try:
        raw = client.get(profile_cache_key(user_id))
    except redis.RedisError as exc:
        log.warning("redis unavailable, reading profile from PostgreSQL: %s", exc)
        return None
    return json.loads(raw) if raw else None


def cache_profile(client: redis.Redis, user_id: str, view: dict[str, Any], ttl_seconds: int) -> None:
    try:
        client.set(profile_cache_key(user_id), json.dumps(view), ex=ttl_seconds)
    except redis.RedisError as exc:
        log.warning("redis unavailable, profile not cached: %s", exc)


class _Script:
    """A Lua script registered once per client (redis-py then runs it by SHA)."""

    def __init__(self, source: str):
        self.source = source
        self.registered: weakref.WeakKeyDictionary[redis.Redis, Any] = weakref.WeakKeyDictionary()

    def __call__(self, keys: list[str], args: list[Any], client: redis.Redis) -> Any:
        script = self.registered.get(client)
        if script is None:
            script = self.registered[client] = client.register_script(self.source)
        return script(keys=keys, args=args)


# Members of the set KEYS[i] and the set itself, for i from ARGV[n] on (cache keys tracked per user).
DROP_TRACKED_LUA = """
    for i = tonumber(ARGV[#ARGV]), #KEYS do
        for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do redis.call('DEL', key) end
        redis.call('DEL', KEYS[i])
    end
"""

# KEYS: the flag, then tracked sets to drop; ARGV: version, ttl, 2 (where the sets start).
_RAISE_FLAG = _Script(
    """
    local current = tonumber(redis.call('GET', KEYS[1]))
    if current == nil or current < tonumber(ARGV[1]) then
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    end
    """
    + DROP_TRACKED_LUA
)

# KEYS: n flag keys then n cache keys; ARGV: the n versions processed ('' = unconditional).
_CLEAR_FLAGS = _Script(
    """
    local n = #ARGV
    for i = 1, n do
        local flag = tonumber(redis.call('GET', KEYS[i]))
        if ARGV[i] == '' or flag == nil or flag <= tonumber(ARGV[i]) then
            redis.call('DEL', KEYS[i])
        end
        redis.call('DEL', KEYS[n + i])
    end
    """
)
