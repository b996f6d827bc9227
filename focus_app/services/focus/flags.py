"""The seed-000 update flags `focus:needs_update:{user_id}`: raised after a session change (or by
any other service, with any value: seed 000's `"1"` included), read by the profile job's discovery,
cleared once an update that started after the flag was raised has been computed.

The flag race: a batch first swaps each of its users' flags for a token of its own, then reads
their sessions, and after its commit deletes only the flags that still hold its token. A flag
raised during the computation (whatever its value) has replaced the token and survives for the
next run; one raised before the swap is covered by the computation, which started after it.

Redis is an accelerator: when it is down these helpers log the degradation and report it, so
writes to PostgreSQL still succeed and the periodic job falls back to the database rule.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import redis

from focus_app.services.jobkit import keys
from focus_app.services.jobkit.lua import DROP_TRACKED_LUA, Script

log = logging.getLogger(__name__)


def flag_for_update(
    client: redis.Redis, user_id: str, version: int, ttl_seconds: int, *, drop_tracked: Sequence[str] = ()
) -> bool:
    """Flag a user whose sessions reached `version` (the value is for a reader; any value means
    "needs an update").

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


def claim_flags(client: redis.Redis, user_ids: Sequence[str]) -> str:
    """Before a batch reads its users' sessions: their existing flags take a token of the batch's
    own (keeping their lifetime). Returns the token for `clear_flags_and_cache`."""
    token = f"claimed:{uuid.uuid4().hex}"
    if user_ids:
        try:
            _CLAIM_FLAGS(
                keys=[keys.update_flag(user_id) for user_id in user_ids], args=[token], client=client
            )
        except redis.RedisError as exc:
            log.warning("redis unavailable, %d flags left for the next run: %s", len(user_ids), exc)
    return token


def clear_flags_and_cache(client: redis.Redis, user_ids: Sequence[str], token: str) -> bool:
    """After the batch's commit: clear each flag that still holds the batch's token (nothing raised
    it since the claim) and drop the users' cached profiles."""
    if not user_ids:
        return True
    names = [keys.update_flag(user_id) for user_id in user_ids]
    names += [keys.profile_cache(user_id) for user_id in user_ids]
    try:
        _CLEAR_FLAGS(keys=names, args=[token], client=client)
        return True
    except redis.RedisError as exc:
        log.warning("redis unavailable, %d flags left for the next run: %s", len(user_ids), exc)
        return False


# KEYS: the flag, then tracked sets to drop; ARGV: version, ttl, 2 (where the sets start).
_RAISE_FLAG = Script(
    """
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    """
    + DROP_TRACKED_LUA
)

# KEYS: the flags; ARGV: the token. Only flags that exist: a claim never raises one.
_CLAIM_FLAGS = Script(
    """
    for i = 1, #KEYS do
        if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('SET', KEYS[i], ARGV[1], 'KEEPTTL') end
    end
    """
)

# KEYS: n flag keys then n cache keys; ARGV: the token.
_CLEAR_FLAGS = Script(
    """
    local n = #KEYS / 2
    for i = 1, n do
        if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
        redis.call('DEL', KEYS[n + i])
    end
    """
)
