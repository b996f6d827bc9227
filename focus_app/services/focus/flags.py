"""The seed-000 update flags `focus:needs_update:{user_id}`: raised after a session change,
read by the profile job's discovery, cleared once the user's profile caught up.

Redis is an accelerator: when it is down these helpers log the degradation and report it, so
writes to PostgreSQL still succeed and the periodic job falls back to the database rule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from focus_app.services.jobkit import keys
from focus_app.services.jobkit.lua import DROP_TRACKED_LUA, Script

log = logging.getLogger(__name__)


def flag_for_update(
    client: redis.Redis, user_id: str, version: int, ttl_seconds: int, *, drop_tracked: Sequence[str] = ()
) -> bool:
    """Flag a user whose sessions reached `version`; the flag only ever moves forward.

    `drop_tracked`: sets of cache keys made stale by the same change, dropped with their members
    in the same round trip.
    """
    try:
        _RAISE_FLAG(
            keys=[keys.update_flag(user_id), *drop_tracked], args=[version, ttl_seconds, 2], client=client
        )
        return True
    except redis.RedisError as exc:
        log.warning("redis unavailable, user %s not flagged (the database rule catches it): %s", user_id, exc)
        return False


def sessions_changed(client: redis.Redis, user_id: str, version: int, flag_ttl_seconds: int) -> None:
    """After a committed change to the user's sessions (or timezone): raise their update flag and
    drop their cached briefs in one round trip. With Redis down, the bumped sessions_version still
    finds the user and the cached briefs expire."""
    flag_for_update(client, user_id, version, flag_ttl_seconds, drop_tracked=[keys.brief_tracking(user_id)])


def flagged_user_ids(client: redis.Redis) -> list[str]:
    """All users with an update flag; raises RedisError for the caller to degrade."""
    return [
        keys.user_of_update_flag(key.decode())
        for key in client.scan_iter(match=keys.UPDATE_FLAG_PATTERN, count=1000)
    ]


def clear_flags_and_cache(client: redis.Redis, processed: Sequence[tuple[str, int | None]]) -> bool:
    """Clear each user's flag unless it was raised past the version just processed.

    A session that ends while its profile is computed raises the flag to a newer version, so
    that flag survives and the user is computed again: the flag race of seed 000 cannot drop it.
    A version of None (no such user) clears the flag unconditionally.
    """
    if not processed:
        return True
    names = [keys.update_flag(user_id) for user_id, _ in processed]
    names += [keys.profile_cache(user_id) for user_id, _ in processed]
    versions = ["" if version is None else version for _, version in processed]
    try:
        _CLEAR_FLAGS(keys=names, args=versions, client=client)
        return True
    except redis.RedisError as exc:
        log.warning("redis unavailable, %d flags left for the next run: %s", len(processed), exc)
        return False


# KEYS: the flag, then tracked sets to drop; ARGV: version, ttl, 2 (where the sets start).
_RAISE_FLAG = Script(
    """
    local current = tonumber(redis.call('GET', KEYS[1]))
    if current == nil or current < tonumber(ARGV[1]) then
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    end
    """
    + DROP_TRACKED_LUA
)

# KEYS: n flag keys then n cache keys; ARGV: the n versions processed ('' = unconditional).
_CLEAR_FLAGS = Script(
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
