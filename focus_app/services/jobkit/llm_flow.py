"""Flow control: the one place every model call of every family goes through.

- **Shared limits** (LLM_TOKENS_PER_MINUTE, LLM_REQUESTS_PER_MINUTE) hold across every worker
  process on every machine: one Lua script admits a call or answers how long until its turn, on
  Redis' own clock. A call counts from the moment it is admitted until one window after its
  answer: while in flight for the most it can cost (`most_tokens`), once answered for what the
  provider counted. So the calls a provider sees within any one window were all counting when the
  last of them was admitted, and together they stay within the limit.
- **A provider's back-off** (429 / 503 / 529 with Retry-After) is one shared stamp: no worker
  starts a call before it ends, and the call that met it is tried again, using up no attempt.
- **Waiting**: a turn less than WAIT_IN_PLACE_SECONDS away is waited for in place; a longer one
  raises Throttled and the family hands its work back to the queue for that long (analysis:
  the attempt is given back; consolidation: the task retries; brief stories: the deterministic
  paragraph stays). Waiting calls are listed in Redis for /ops and /metrics.
- **Daily budgets** (LLM_USER_DAILY_TOKENS): a call made with a Budget is admitted only while the
  user's tokens of the UTC day (spent plus in flight) and the most it can cost fit; otherwise
  OverBudget, with nothing sent.
- **Usage ledger**: calls, tokens, cost, waits, provider back-offs and deferrals per UTC day and
  family in PostgreSQL (`llm_usage_daily`), one upsert per event on a connection of its own, so it
  never commits or rolls back the caller's transaction.

Redis down: with a limit or budget set the call fails as a retryable LLMError (a limit that
cannot be checked is not risked); without any, the call goes ahead.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Engine, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from focus_app.config import Settings
from focus_app.models.llm import LLMUsageDaily
from focus_app.services.jobkit import keys
from focus_app.services.jobkit.llm import (
    Budget,
    Completion,
    LLMError,
    LLMProvider,
    OverBudget,
    ProviderBackoff,
    Throttled,
    Transport,
    transport_from_settings,
)
from focus_app.services.jobkit.lua import Script

log = logging.getLogger("llm_flow")

# A turn at most this far away is waited for in place (the worker slot is held that long).
WAIT_IN_PLACE_SECONDS = 2.0
# Tokens a request adds around its text (roles, message framing), counted in the estimate.
FRAMING_TOKENS = 32


def most_tokens(system: str, prompt: str, max_tokens: int) -> int:
    """The most a call can cost: every prompt byte as a token (a byte-level BPE token covers at
    least one byte), the request's framing, and the whole answer allowance."""
    return len(system.encode()) + len(prompt.encode()) + FRAMING_TOKENS + max_tokens


def budget_day(now: datetime) -> tuple[date, datetime]:
    """The UTC day a budget counts, and when the next one starts (a deferred job runs again then)."""
    day = now.astimezone(UTC).date()
    return day, datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)


@dataclass(frozen=True)
class Limits:
    tokens_per_window: int | None = None
    requests_per_window: int | None = None
    user_daily_tokens: int | None = None
    window_seconds: int = 60
    # How long an unanswered call keeps counting as in flight (its worker may have died mid-call).
    lease_seconds: float = 65.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            tokens_per_window=settings.llm_tokens_per_minute,
            requests_per_window=settings.llm_requests_per_minute,
            user_daily_tokens=settings.llm_user_daily_tokens,
            window_seconds=settings.llm_limit_window_seconds,
            lease_seconds=2 * settings.llm_timeout_seconds + 5,
        )

    @property
    def enforced(self) -> bool:
        return any((self.tokens_per_window, self.requests_per_window, self.user_daily_tokens))

    @property
    def key_ttl(self) -> int:
        return keys.llm_flow_ttl_seconds(self.window_seconds, self.lease_seconds)


@dataclass(frozen=True)
class Flow:
    """What the flow control works with: the shared Redis, an autocommit engine for the ledger,
    the limits. Built per task or request (extensions.llm)."""

    redis: redis.Redis
    statements: Engine
    limits: Limits


def provider_from_settings(settings: Settings, flow: Flow, family: str) -> LLMProvider | None:
    """The configured provider behind the flow control, its calls counted for `family` (one of
    models.llm.LLM_FAMILIES); None for the deterministic path (LLM_PROVIDER=none)."""
    transport = transport_from_settings(settings)
    return None if transport is None else LimitedProvider(transport, flow, family)


@dataclass(frozen=True)
class LimitedProvider:
    transport: Transport
    flow: Flow
    family: str

    @property
    def name(self) -> str:
        return self.transport.name

    def complete(
        self, system: str, prompt: str, *, max_tokens: int = 1024, budget: Budget | None = None
    ) -> Completion:
        """One model call, when its turn comes; Throttled when that is too far away to wait here,
        OverBudget when the user's day cannot pay for it."""
        most = most_tokens(system, prompt, max_tokens)
        patience = WAIT_IN_PLACE_SECONDS
        waited = False
        while True:
            call = uuid.uuid4().hex
            wait, reason = self._turn(call, most, budget)
            if wait > 0:
                if not waited:
                    waited = True
                    self._record(waits=1)
                if wait > patience:
                    # A little late rather than early, spread so handed-back work does not return at once.
                    raise Throttled(wait + random.uniform(0.05, 0.05 + 0.1 * wait), reason)
                patience -= wait
                time.sleep(max(wait, 0.01))
                continue
            try:
                completion = self.transport.send(system, prompt, max_tokens)
            except ProviderBackoff as exc:
                # Refused unread: no tokens, but the provider saw the request.
                self._settle(call, 0, most, budget)
                self._back_off(exc)
                continue
            except LLMError:
                self._settle(call, 0, most, budget)
                raise
            self._settle(call, completion.tokens_in + completion.tokens_out, most, budget)
            self._record(
                calls=1,
                tokens_in=completion.tokens_in,
                tokens_out=completion.tokens_out,
                cost_usd=completion.cost_usd,
            )
            return completion

    # --- Redis ---------------------------------------------------------------------------

    def _turn(self, call: str, most: int, budget: Budget | None) -> tuple[float, str]:
        """0 when the call may start now (it then counts), else the seconds to its turn and why."""
        limits = self.flow.limits
        day, resume_at = budget_day(datetime.now(UTC))
        budgeted = budget is not None and limits.user_daily_tokens is not None
        flow_keys = [keys.LLM_CALLS, keys.LLM_CALL_TOKENS, keys.LLM_WINDOW_TOKENS]
        flow_keys += [keys.LLM_BACKOFF_UNTIL, keys.LLM_WAITING]
        if budgeted:
            assert budget is not None
            flow_keys.append(keys.llm_user_day(budget.user_id, day))
        seed = -1
        while True:
            try:
                reply = _ACQUIRE(
                    flow_keys,
                    [
                        call,
                        most,
                        limits.tokens_per_window or 0,
                        limits.requests_per_window or 0,
                        limits.window_seconds,
                        limits.lease_seconds,
                        f"{self.family}:{call}",
                        limits.key_ttl,
                        limits.user_daily_tokens or 0,
                        seed,
                        keys.LLM_USER_DAY_TTL_SECONDS,
                        keys.LLM_WAITING_FORGET_SECONDS,
                    ],
                    self.flow.redis,
                )
            except redis.RedisError as exc:
                if limits.enforced:
                    raise LLMError(f"flow control unavailable (Redis): {exc}") from None
                log.warning("flow control unavailable (Redis), calling without it: %s", exc)
                return 0.0, ""
            verdict = reply[0].decode()
            if verdict == "seed" and budget is not None:
                seed = budget.spent_on(day)
                continue
            if verdict == "over":
                self._record(deferrals=1)
                raise OverBudget(
                    f"LLM_USER_DAILY_TOKENS: {int(reply[1]):,} of {limits.user_daily_tokens:,} tokens "
                    f"used or in flight today (UTC) and this analysis may need up to {most:,}; "
                    f"it may run again at {resume_at:%Y-%m-%d %H:%M} UTC",
                    resume_at,
                )
            if verdict == "wait":
                return float(reply[1]), reply[2].decode()
            return 0.0, ""

    def _settle(self, call: str, tokens: int, most: int, budget: Budget | None) -> None:
        """The call counts for what it cost from now on, for one more window."""
        limits = self.flow.limits
        settle_keys = [keys.LLM_CALLS, keys.LLM_CALL_TOKENS, keys.LLM_WINDOW_TOKENS]
        if budget is not None and limits.user_daily_tokens is not None:
            settle_keys.append(keys.llm_user_day(budget.user_id, budget_day(datetime.now(UTC))[0]))
        try:
            _SETTLE(settle_keys, [call, tokens, limits.window_seconds, limits.key_ttl, most], self.flow.redis)
        except redis.RedisError as exc:
            # The call keeps counting for what it might have cost until its lease ends.
            log.warning("flow control: call %s not settled (Redis): %s", call, exc)

    def _back_off(self, exc: ProviderBackoff) -> None:
        self._record(backoffs=1)
        try:
            seconds = float(_BACK_OFF([keys.LLM_BACKOFF_UNTIL], [exc.retry_after], self.flow.redis))
        except redis.RedisError as error:
            log.warning("flow control: back-off not shared (Redis): %s", error)
            seconds = exc.retry_after
        log.warning("%s; every worker waits %.1fs before its next model call", exc, seconds)

    # --- PostgreSQL ----------------------------------------------------------------------

    def _record(self, **deltas: Any) -> None:
        record_usage(self.flow.statements, datetime.now(UTC).date(), self.family, **deltas)


def record_usage(statements: Engine, day: date, family: str, **deltas: Any) -> None:
    """Add to the day's figures of one family (calls, tokens_in, tokens_out, cost_usd, waits,
    backoffs, deferrals). A database that is down loses this one increment, never the call."""
    insert = pg_insert(LLMUsageDaily).values(day=day, family=family, **deltas)
    upsert = insert.on_conflict_do_update(
        index_elements=["day", "family"],
        set_={
            **{name: getattr(LLMUsageDaily, name) + insert.excluded[name] for name in deltas},
            "updated_at": func.now(),
        },
    )
    try:
        with statements.connect() as connection:
            connection.execute(upsert)
    except SQLAlchemyError as exc:
        log.warning("llm usage not recorded (%s %s): %s", family, deltas, exc)


@dataclass(frozen=True)
class WindowState:
    """The shared limiter as it stands: what counts in the current window, the provider back-off
    still to run, and the calls waiting for their turn per family."""

    tokens: int
    requests: int
    backoff_seconds: float
    waiting: dict[str, int]


def window_state(client: redis.Redis) -> WindowState:
    seconds, micros = client.time()
    now = seconds + micros / 1e6
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(keys.LLM_CALLS, f"({now}", "+inf")
    pipe.get(keys.LLM_BACKOFF_UNTIL)
    pipe.zrangebyscore(keys.LLM_WAITING, f"({now}", "+inf")
    calls, backoff, waiters = pipe.execute()
    tokens = client.hmget(keys.LLM_CALL_TOKENS, calls) if calls else []
    waiting: dict[str, int] = {}
    for member in waiters:
        family = member.decode().partition(":")[0]
        waiting[family] = waiting.get(family, 0) + 1
    return WindowState(
        tokens=sum(int(value) for value in tokens if value is not None),
        requests=len(calls),
        backoff_seconds=max(0.0, float(backoff) - now) if backoff else 0.0,
        waiting=waiting,
    )


# KEYS: calls, call tokens, window tokens, back-off, waiting[, the user's day]
# ARGV: call id, most tokens, token limit, request limit (0 = none), window, lease, waiter,
#       key ttl, budget, seed (-1 = unknown), user key ttl, waiter ttl
# Answers {'ok'} (the call counts from now), {'wait', seconds, reason}, {'over', used} (budget)
# or {'seed'} (the user's day is not in Redis: call again with what PostgreSQL says was spent).
_ACQUIRE = Script(
    """
    local clock = redis.call('TIME')
    local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
    local id, most = ARGV[1], tonumber(ARGV[2])
    local token_limit, request_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
    local window, lease = tonumber(ARGV[5]), tonumber(ARGV[6])
    for _, done in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
        redis.call('DECRBY', KEYS[3], tonumber(redis.call('HGET', KEYS[2], done) or '0'))
        redis.call('HDEL', KEYS[2], done)
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    local user = KEYS[6]
    if user then
        if redis.call('EXISTS', user) == 0 then
            if tonumber(ARGV[10]) < 0 then return {'seed'} end
            redis.call('HSET', user, 'spent', ARGV[10], 'reserved', '0')
        end
        redis.call('EXPIRE', user, ARGV[11])
        local used = tonumber(redis.call('HGET', user, 'spent') or '0')
            + tonumber(redis.call('HGET', user, 'reserved') or '0')
        if used + most > tonumber(ARGV[9]) then return {'over', tostring(used)} end
    end
    local wait, reason = 0, ''
    local backoff = tonumber(redis.call('GET', KEYS[4]) or '0')
    if backoff > now then wait, reason = backoff - now, 'a provider back-off' end
    local tokens = math.max(0, tonumber(redis.call('GET', KEYS[3]) or '0'))
    local calls = redis.call('ZCARD', KEYS[1])
    local need = most
    if token_limit > 0 then need = math.min(most, token_limit) end
    local short_tokens = token_limit > 0 and tokens + need > token_limit
    local short_requests = request_limit > 0 and calls + 1 > request_limit
    if short_tokens or short_requests then
        -- When enough calls stop counting; one still in flight as if it were answered now.
        local token_wait = (short_tokens and window) or 0
        local request_wait = (short_requests and window) or 0
        local freed_tokens, freed_calls = 0, 0
        local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
        for i = 1, #entries, 2 do
            if not (short_tokens or short_requests) then break end
            local free_in = math.min(tonumber(entries[i + 1]), now + window) - now
            freed_calls = freed_calls + 1
            freed_tokens = freed_tokens + tonumber(redis.call('HGET', KEYS[2], entries[i]) or '0')
            if short_tokens and tokens - freed_tokens + need <= token_limit then
                token_wait, short_tokens = free_in, false
            end
            if short_requests and calls - freed_calls + 1 <= request_limit then
                request_wait, short_requests = free_in, false
            end
        end
        if token_wait > wait then wait, reason = token_wait, 'LLM_TOKENS_PER_MINUTE' end
        if request_wait > wait then wait, reason = request_wait, 'LLM_REQUESTS_PER_MINUTE' end
    end
    if wait > 0 then
        redis.call('ZADD', KEYS[5], now + wait, ARGV[7])
        redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[12]))
        redis.call('EXPIRE', KEYS[5], ARGV[12])
        return {'wait', tostring(wait), reason}
    end
    redis.call('ZADD', KEYS[1], now + lease + window, id)
    redis.call('HSET', KEYS[2], id, most)
    redis.call('INCRBY', KEYS[3], most)
    for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[8]) end
    if user then redis.call('HINCRBY', user, 'reserved', most) end
    redis.call('ZREM', KEYS[5], ARGV[7])
    return {'ok'}
    """
)

# KEYS: calls, call tokens, window tokens[, the user's day]; ARGV: call id, tokens, window, key ttl, most
_SETTLE = Script(
    """
    local clock = redis.call('TIME')
    local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
    local tokens = tonumber(ARGV[2])
    local counted = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
    redis.call('INCRBY', KEYS[3], tokens - counted)
    redis.call('HSET', KEYS[2], ARGV[1], tokens)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
    for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
    local user = KEYS[4]
    if user and redis.call('EXISTS', user) == 1 then
        local reserved = tonumber(redis.call('HGET', user, 'reserved') or '0') - tonumber(ARGV[5])
        redis.call('HSET', user, 'reserved', math.max(0, reserved))
        redis.call('HINCRBY', user, 'spent', tokens)
    end
    """
)

# KEYS: back-off; ARGV: seconds. Moves the shared back-off later, never earlier; answers its length.
_BACK_OFF = Script(
    """
    local clock = redis.call('TIME')
    local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
    local wanted = now + tonumber(ARGV[1])
    local current = tonumber(redis.call('GET', KEYS[1]) or '0')
    if wanted > current then
        redis.call('SET', KEYS[1], tostring(wanted), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
        return tostring(wanted - now)
    end
    return tostring(current - now)
    """
)
