"""Every Redis key the application writes, and the lifetimes that are not settings.

The one place a key's format lives. User-derived parts go through `user_part`, which
percent-encodes ':', '%', glob characters and anything unprintable, so a user id can never read as
another key's namespace (users called `keys`, `latest` or `stats` are ordinary users) and a user's
keys can be matched by a glob as they are. Other ids are left as they are, so the seed's
`focus:needs_update:{user_id}` keeps its documented form for them.

Redis is the broker, the result backend and a cache here; what these keys hold can be rebuilt
from PostgreSQL, and every key has a TTL.
"""

from __future__ import annotations

import math
import re
from datetime import date
from urllib.parse import unquote

# Encoded in a user-derived part: the separator, the escape itself, glob characters, and anything
# unprintable (so a key never spans lines in a log). Everything else, non-ASCII included, stays.
_UNSAFE = re.compile(r"[%:*?\[\]\\\s\x00-\x1f\x7f]")

# ---------------------------------------------------------------- lifetimes (not settings)

DELIVERY_COUNT_TTL_SECONDS = 24 * 3600  # outlives every redelivery of one message
BRIEF_STATS_TTL_SECONDS = 8 * 24 * 3600  # the health check reads 7 days of hit/miss counts
PERIODIC_SUCCESS_TTL_SECONDS = 35 * 24 * 3600  # longer than the longest schedule (weekly)
LLM_USER_DAY_TTL_SECONDS = 2 * 24 * 3600  # a user's day of model tokens outlives the day
LLM_WAITING_FORGET_SECONDS = 3600  # a waiter that never came back stops being listed
WRITE_PROBE_TTL_SECONDS = 10  # the probe proves one write; nobody reads it back


def user_part(user_id: str) -> str:
    """A user id as it stands in a key."""
    return _UNSAFE.sub(lambda match: "".join(f"%{byte:02X}" for byte in match.group().encode()), user_id)


def user_from_part(part: str) -> str:
    return unquote(part)


# ---------------------------------------------------------------- focus profiles (seed 000)

UPDATE_FLAG_PREFIX = "focus:needs_update:"
UPDATE_FLAG_PATTERN = UPDATE_FLAG_PREFIX + "*"


def update_flag(user_id: str) -> str:
    """Raised after a session change; the profile job computes the user and clears it."""
    return UPDATE_FLAG_PREFIX + user_part(user_id)


def user_of_update_flag(key: str) -> str:
    return user_from_part(key.removeprefix(UPDATE_FLAG_PREFIX))


def profile_cache(user_id: str) -> str:
    """The caller's profile view (PROFILE_CACHE_TTL_SECONDS)."""
    return f"focus:profile:{user_part(user_id)}"


# ---------------------------------------------------------------- weekly briefs (seed 004)


def brief(user_id: str, week_of: date | str) -> str:
    """A brief view (BRIEF_CACHE_TTL_SECONDS); `week_of` is a Monday or "latest"."""
    return f"brief:{user_part(user_id)}:{week_of}"


def user_briefs_pattern(user_id: str) -> str:
    """Every cached brief of one user, as a SCAN pattern."""
    return f"brief:{user_part(user_id)}:*"


def brief_tracking(user_id: str) -> str:
    """The set of a user's cached brief keys, so invalidation needs no keyspace scan."""
    return f"focus:brief_keys:{user_part(user_id)}"


def brief_stats(day: date) -> str:
    """Hash of the day's brief-cache `hits` and `misses` (BRIEF_STATS_TTL_SECONDS)."""
    return f"focus:brief_stats:{day.isoformat()}"


# ---------------------------------------------------------------- tasks and operations


def task_owner(task_id: str) -> str:
    """Who started a task through the API (the result's lifetime), for `GET /jobs/{task_id}`."""
    return f"focus:task_owner:{user_part(task_id)}"


def deliveries(task_id: str, retries: int) -> str:
    """Executions of one message (DELIVERY_COUNT_TTL_SECONDS); a Celery retry counts anew."""
    return f"focus:deliveries:{user_part(task_id)}:{retries}"


# Hash task name -> unix time of its last successful finish (PERIODIC_SUCCESS_TTL_SECONDS).
PERIODIC_SUCCESS = "focus:metrics:periodic_last_success"

# Written by `/ready` and by a worker waiting out a Redis that refuses writes
# (WRITE_PROBE_TTL_SECONDS): a write accepted here is the check.
WRITE_PROBE = "focus:write_probe"


# ---------------------------------------------------------------- LLM flow control (jobkit/llm_flow.py)
# The shared limit lives in these keys, each refreshed to a lifetime of the window plus the call
# lease on every write, so an idle limiter leaves nothing behind. Losing them forgets at most one
# window of calls (the budget is seeded again from analysis_jobs).

# Sorted set: call id -> unix time at which the call stops counting (its window has passed).
LLM_CALLS = "focus:llm:calls"
# Hash: call id -> tokens it counts for (the most it can cost while in flight, then what it cost).
LLM_CALL_TOKENS = "focus:llm:call_tokens"
# Counter: the tokens of every call still counting (the sum of LLM_CALL_TOKENS).
LLM_WINDOW_TOKENS = "focus:llm:window_tokens"
# Unix time until which no call may start: a provider answered 429 / overloaded (Retry-After);
# it expires a second after the back-off ends.
LLM_BACKOFF_UNTIL = "focus:llm:backoff_until"
# Sorted set: "{family}:{call id}" -> when that waiting call tries again (LLM_WAITING_FORGET_SECONDS).
LLM_WAITING = "focus:llm:waiting"


def llm_flow_ttl_seconds(window_seconds: float, lease_seconds: float) -> int:
    """Lifetime of the limiter's keys, refreshed on every write: a call counts for at most its lease
    and one window, and a minute more keeps an idle limiter's keys while a call may still settle."""
    return math.ceil(window_seconds + lease_seconds) + 60


def llm_user_day(user_id: str, day: date) -> str:
    """Hash `spent` / `reserved` tokens of one user's analyses on one UTC day (LLM_USER_DAY_TTL_SECONDS)."""
    return f"focus:llm:user:{user_part(user_id)}:{day.isoformat()}"
