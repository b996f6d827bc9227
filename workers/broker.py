"""Workers outlive a Redis that refuses writes, and a broker path that silently drops packets.

Redis answers an error instead of a reply when it cannot take writes: `MISCONF` (a failed
snapshot, a full disk), `NOREPLICAS` (`min-replicas-to-write` unmet), `OOM` (maxmemory under
noeviction), `READONLY` (a replica after a failover). BRPOP is a write, so kombu's consumer raises
redis's ResponseError, which kombu files as a channel error and Celery's consumer treats as
fatal: the worker used to exit ("Unrecoverable error: ResponseError"). `broker_channel_error_retry`
makes Celery restart its connection instead, like after a lost one, and `Consumer` below holds
that restart until Redis accepts a write again: logged once when it starts refusing and once when
it accepts again, checked with a capped exponential backoff, never a hot reconnect loop.

Under OOM BRPOP still works (it frees memory) and the consumer goes on; kombu then warns, with a
traceback, each second its binding refresh is refused: `QuietRepeats` lets one through a minute.

Beat needs nothing more: a publish that Redis refuses fails that tick (`Message Error` in its
log) and the next tick publishes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.signals import celeryd_init
from celery.worker import state
from celery.worker.consumer import Consumer as CeleryConsumer

from focus_app.services.jobkit import keys

log = logging.getLogger(__name__)

FIRST_CHECK_SECONDS = 0.5
MAX_CHECK_SECONDS = 10.0
PROBE_SOCKET_TIMEOUT_SECONDS = 5.0

# A connection whose path silently drops packets must fail within seconds instead of hanging
# (celery#8030, #10502): kombu drops a BRPOP whose reply is overdue by `health_check_interval` (and
# pings its pub/sub connection at that interval), socket timeouts bound every other command and a
# new connection's handshake, and keepalive lets the kernel find a dead peer on an idle connection.
# The timeouts are settings (REDIS_*_TIMEOUT_SECONDS, short so a publish never holds a web request);
# a worker process raises them (`use_worker_timeouts`): a Redis slowed by load must not look dead to
# a worker, whose lost connection cancels its running tasks.
BROKER_TRANSPORT_OPTIONS = {"socket_keepalive": True, "health_check_interval": 10}
RESULT_BACKEND_SETTINGS = {"redis_socket_keepalive": True, "redis_backend_health_check_interval": 10}
WORKER_SOCKET_TIMEOUT_SECONDS = 10.0
WORKER_CONNECT_TIMEOUT_SECONDS = 5.0


def use_worker_timeouts(conf: Any, **_kwargs: object) -> None:
    """`celeryd_init`: before a worker connects, give its broker and result backend connections
    the worker's timeouts."""
    conf.broker_transport_options = {
        **conf.broker_transport_options,
        "socket_timeout": WORKER_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": WORKER_CONNECT_TIMEOUT_SECONDS,
    }
    conf.broker_connection_timeout = WORKER_CONNECT_TIMEOUT_SECONDS
    conf.redis_socket_timeout = WORKER_SOCKET_TIMEOUT_SECONDS
    conf.redis_socket_connect_timeout = WORKER_CONNECT_TIMEOUT_SECONDS


celeryd_init.connect(use_worker_timeouts, weak=False)


class QuietRepeats(logging.Filter):
    """Drops a record whose message format was logged less than `seconds` ago."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, key = time.monotonic(), str(record.msg)
        previous = self.last.get(key)
        if previous is not None and now - previous < self.seconds:
            return False
        self.last[key] = now
        return True


logging.getLogger("kombu.transport.redis").addFilter(QuietRepeats(60))


def refuses_writes(error: BaseException) -> bool:
    """An error answered by a Redis that is up (not a lost connection)."""
    return isinstance(error, redis.ResponseError)


def write_refusal(client: redis.Redis) -> str | None:
    """Why Redis refuses a write now (its error message), or None when it accepts one."""
    try:
        client.set(keys.WRITE_PROBE, "1", ex=keys.WRITE_PROBE_TTL_SECONDS)
    except redis.ResponseError as exc:
        return str(exc)
    return None


def wait_until_writable(broker_url: str, error: BaseException) -> None:
    """Block the consumer's restart until Redis accepts a write, a lost connection (then Celery's
    own reconnect takes over) or a shutdown."""
    started = time.monotonic()
    client = redis.Redis.from_url(
        broker_url,
        socket_timeout=PROBE_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=PROBE_SOCKET_TIMEOUT_SECONDS,
    )
    delay = FIRST_CHECK_SECONDS
    try:
        reason = write_refusal(client)
        if reason is None:
            return
        log.warning(
            "Redis refuses writes (%s): consuming paused until it accepts one, checked every %.0f s at most",
            reason,
            MAX_CHECK_SECONDS,
            extra={"broker_error": str(error)},
        )
        while reason is not None:
            _sleep_unless_stopping(delay)
            delay = min(delay * 2, MAX_CHECK_SECONDS)
            reason = write_refusal(client)
        log.warning("Redis accepts writes again after %.1f s: consuming resumes", time.monotonic() - started)
    except redis.ConnectionError as exc:
        log.warning("Redis unreachable while it refused writes (%s): reconnecting", exc)
    finally:
        client.close()


def _sleep_unless_stopping(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state.maybe_shutdown()
        time.sleep(min(0.2, deadline - time.monotonic()))
    state.maybe_shutdown()


class Consumer(CeleryConsumer):
    """Celery's consumer, waiting out a Redis that refuses writes before it consumes again."""

    def on_connection_error_before_connected(self, exc: Exception) -> None:
        super().on_connection_error_before_connected(exc)
        self._wait_if_refusing(exc)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        super().on_connection_error_after_connected(exc)
        self._wait_if_refusing(exc)

    def _wait_if_refusing(self, exc: Exception) -> None:
        if refuses_writes(exc) or refuses_writes(exc.__cause__ or exc.__context__ or exc):
            wait_until_writable(self.app.conf.broker_url, exc)


CELERY_SETTINGS: dict[str, Any] = {
    "broker_channel_error_retry": True,
    "worker_consumer": "workers.broker:Consumer",
    **RESULT_BACKEND_SETTINGS,
}
