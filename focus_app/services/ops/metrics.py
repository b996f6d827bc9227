"""Operator metrics, computed from Redis and PostgreSQL when Prometheus scrapes.

Nothing is counted in process memory, so every gunicorn worker answers the same figures and a
restart loses nothing: queue depths and ages are read from the broker's lists, job outcomes from
`job_runs`, `job_retry_queue` and `analysis_jobs`, periodic successes from one Redis hash, model
usage from `llm_usage_daily` and the shared limiter's keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from focus_app.models import JobRun
from focus_app.models.analysis import AnalysisJob
from focus_app.models.intelligence import JobRetryQueue
from focus_app.services.intelligence.health import deadline_check
from focus_app.services.jobkit import keys
from focus_app.services.jobkit.llm_flow import Limits, window_state
from focus_app.services.ops import llm_usage

log = logging.getLogger(__name__)

# Header stamped on every task message at publish time (workers/signals.py); the age of the
# oldest waiting message is read from it.
SENT_AT_HEADER = "sent_at"


@dataclass(frozen=True)
class BrokerLayout:
    """Where the broker keeps its messages, from the transport (workers/broker.py): the Redis lists
    of each queue (one per priority step) and the hash of unacknowledged deliveries."""

    queue_lists: dict[str, list[str]]
    unacked_key: str


@dataclass(frozen=True)
class QueueState:
    depth: int
    oldest_age_seconds: float


def queue_states(broker: redis.Redis, layout: BrokerLayout, now: float) -> dict[str, QueueState]:
    """Depth and age of the oldest waiting message per queue (kombu pushes left, pops right)."""
    pipe = broker.pipeline(transaction=False)
    for lists in layout.queue_lists.values():
        for name in lists:
            pipe.llen(name)
            pipe.lindex(name, -1)
    replies = iter(pipe.execute())
    states = {}
    for queue, lists in layout.queue_lists.items():
        depth, sent = 0, []
        for _name in lists:
            depth += next(replies)
            stamp = _sent_at(next(replies))
            if stamp is not None:
                sent.append(stamp)
        states[queue] = QueueState(depth, max(0.0, now - min(sent)) if sent else 0.0)
    return states


def _sent_at(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)["headers"][SENT_AT_HEADER]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int | float) else None


def unacked_count(broker: redis.Redis, layout: BrokerLayout) -> int:
    """Messages handed to a worker and not yet acknowledged (running or waiting for their ETA)."""
    return broker.hlen(layout.unacked_key)


def record_periodic_success(client: redis.Redis, task_name: str, when: float) -> None:
    pipe = client.pipeline()
    pipe.hset(keys.PERIODIC_SUCCESS, task_name, when)
    pipe.expire(keys.PERIODIC_SUCCESS, keys.PERIODIC_SUCCESS_TTL_SECONDS)
    pipe.execute()


def periodic_successes(client: redis.Redis) -> dict[str, float]:
    stamps: dict[bytes, bytes] = client.hgetall(keys.PERIODIC_SUCCESS)  # type: ignore[assignment]
    return {name.decode(): float(value) for name, value in stamps.items()}


@dataclass
class JobFigures:
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)
    retry_queue: dict[tuple[str, str], int] = field(default_factory=dict)
    dead_letters: int = 0


def job_figures(db: Session) -> JobFigures:
    """Four grouped reads; each table is small or indexed on the grouped columns."""
    figures = JobFigures()
    for job, status, count in db.execute(
        select(JobRun.job_name, JobRun.status, func.count()).group_by(JobRun.job_name, JobRun.status)
    ):
        figures.runs[(job, status)] = count
    for job, finished in db.execute(
        select(JobRun.job_name, func.max(JobRun.finished_at))
        .where(JobRun.status == "success")
        .group_by(JobRun.job_name)
    ):
        if finished is not None:
            figures.last_success[job] = finished.timestamp()
    for job, status, count in db.execute(
        select(JobRetryQueue.job_name, JobRetryQueue.status, func.count()).group_by(
            JobRetryQueue.job_name, JobRetryQueue.status
        )
    ):
        figures.retry_queue[(job, status)] = count
    figures.dead_letters = (
        db.scalar(
            select(func.count()).where(AnalysisJob.status == "failed", AnalysisJob.archived_at.is_(None))
        )
        or 0
    )
    return figures


class FocusCollector:
    """prometheus_client collector: one scrape = one read of each store; a store that is down
    is reported by `focus_metrics_source_up` and its figures are left out."""

    def __init__(
        self,
        db: Session,
        client: redis.Redis,
        broker: redis.Redis,
        layout: BrokerLayout,
        llm_limits: Limits | None = None,
    ):
        self.db, self.client, self.broker, self.layout = db, client, broker, layout
        self.llm_limits = llm_limits or Limits()

    def collect(self) -> Iterator[Metric]:
        families: list[Metric] = []
        up = GaugeMetricFamily(
            "focus_metrics_source_up", "1 when the store answered this scrape", labels=["source"]
        )
        for source, read in (
            ("broker", self._broker_metrics),
            ("redis", self._redis_metrics),
            ("postgresql", self._database_metrics),
        ):
            up.add_metric([source], self._read(read, families))
        yield from families
        yield up

    def _read(self, read: Callable[[], list[Metric]], families: list[Metric]) -> float:
        try:
            families.extend(read())
        except redis.RedisError as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            return 0.0
        except SQLAlchemyError as exc:
            self.db.rollback()
            log.warning("metrics: database unavailable: %s", exc)
            return 0.0
        return 1.0

    def _broker_metrics(self) -> list[Metric]:
        states = queue_states(self.broker, self.layout, time.time())
        depth = GaugeMetricFamily("focus_queue_messages", "messages waiting in the queue", labels=["queue"])
        age = GaugeMetricFamily(
            "focus_queue_oldest_message_age_seconds",
            "age of the oldest waiting message (0 when the queue is empty)",
            labels=["queue"],
        )
        for queue, state in states.items():
            depth.add_metric([queue], state.depth)
            age.add_metric([queue], state.oldest_age_seconds)
        unacked = GaugeMetricFamily(
            "focus_broker_unacked_messages",
            "messages delivered to a worker and not yet acknowledged",
            value=unacked_count(self.broker, self.layout),
        )
        return [depth, age, unacked]

    def _redis_metrics(self) -> list[Metric]:
        periodic = GaugeMetricFamily(
            "focus_periodic_task_last_success_timestamp_seconds",
            "when a task of the beat schedule last finished without an error",
            labels=["task"],
        )
        for task, when in sorted(periodic_successes(self.client).items()):
            periodic.add_metric([task], when)
        return [periodic, *self._llm_window_metrics()]

    def _llm_window_metrics(self) -> list[Metric]:
        state = window_state(self.client)
        limits = self.llm_limits
        window = GaugeMetricFamily(
            "focus_llm_window",
            f"model calls and tokens counting against the shared limit now (last {limits.window_seconds}s)",
            labels=["kind"],
        )
        window.add_metric(["tokens"], state.tokens)
        window.add_metric(["requests"], state.requests)
        limit = GaugeMetricFamily(
            "focus_llm_limit",
            "the configured limits per window (LLM_TOKENS_PER_MINUTE, LLM_REQUESTS_PER_MINUTE) and "
            "per user and day (LLM_USER_DAILY_TOKENS); absent when unlimited",
            labels=["kind"],
        )
        for kind, value in (
            ("tokens", limits.tokens_per_window),
            ("requests", limits.requests_per_window),
            ("user_daily_tokens", limits.user_daily_tokens),
        ):
            if value is not None:
                limit.add_metric([kind], value)
        waiting = GaugeMetricFamily(
            "focus_llm_calls_waiting",
            "model calls waiting for their turn now, per job family",
            labels=["family"],
        )
        for family, count in sorted(state.waiting.items()):
            waiting.add_metric([family], count)
        backoff = GaugeMetricFamily(
            "focus_llm_provider_backoff_seconds",
            "seconds left of the back-off a provider asked for (429 / overloaded); 0 when none",
            value=state.backoff_seconds,
        )
        return [window, limit, waiting, backoff]

    def _database_metrics(self) -> list[Metric]:
        figures = job_figures(self.db)
        deadline = deadline_check(self.db, datetime.now(UTC))
        self.db.rollback()
        runs = CounterMetricFamily(
            "focus_job_runs", "job_runs rows by job and status", labels=["job", "status"]
        )
        for (job, status), count in sorted(figures.runs.items()):
            runs.add_metric([job, status], count)
        last = GaugeMetricFamily(
            "focus_job_last_success_timestamp_seconds",
            "finish time of the job's last successful run (job_runs)",
            labels=["job"],
        )
        for job, when in sorted(figures.last_success.items()):
            last.add_metric([job], when)
        retry = GaugeMetricFamily(
            "focus_retry_queue_entries",
            "job_retry_queue rows: pending retries and exhausted (parked) users",
            labels=["job", "status"],
        )
        for (job, status), count in sorted(figures.retry_queue.items()):
            retry.add_metric([job, status], count)
        dead = GaugeMetricFamily(
            "focus_dead_letters",
            "failed analysis jobs not yet archived (the dead-letter list, replayable)",
            value=figures.dead_letters,
        )
        on_time = GaugeMetricFamily(
            "focus_weekly_brief_deadline_ratio",
            "share of users due for more than 4 hours (Monday 02:00 in their timezone) who have "
            "their weekly brief; 1 when nobody is due yet (alert below 0.999)",
            value=1.0 if deadline["on_time_share"] is None else deadline["on_time_share"],
        )
        overdue = GaugeMetricFamily(
            "focus_weekly_brief_overdue_users",
            "users due for more than 4 hours without their weekly brief",
            value=deadline["due_users"] - deadline["briefed_users"],
        )
        return [runs, last, retry, dead, on_time, overdue, *self._llm_usage_metrics()]

    def _llm_usage_metrics(self) -> list[Metric]:
        totals = llm_usage.usage_totals(self.db)
        jobs = llm_usage.waiting_jobs(self.db)
        self.db.rollback()
        described = {
            "calls": "model calls answered",
            "cost_usd": "model cost in USD (LLM_COST_*_PER_MTOK)",
            "waits": "model calls that waited for the shared limit or a provider back-off",
            "provider_backoffs": "provider answers 429 / 503 / 529 (rate limited, overloaded)",
            "budget_deferrals": "analyses deferred by a user's daily token budget",
        }
        column = {"provider_backoffs": "backoffs", "budget_deferrals": "deferrals"}
        families: list[Metric] = []
        tokens = CounterMetricFamily(
            "focus_llm_tokens", "model tokens per job family and direction", labels=["family", "direction"]
        )
        for family, figures in sorted(totals.items()):
            tokens.add_metric([family, "in"], figures["tokens_in"])
            tokens.add_metric([family, "out"], figures["tokens_out"])
        families.append(tokens)
        for name, help_text in described.items():
            counter = CounterMetricFamily(f"focus_llm_{name}", help_text, labels=["family"])
            for family, figures in sorted(totals.items()):
                counter.add_metric([family], float(figures[column.get(name, name)]))
            families.append(counter)
        waiting = GaugeMetricFamily(
            "focus_analysis_jobs_waiting",
            "analysis jobs waiting: for their turn under the model limit (turn) or for the next day "
            "of their user's token budget (budget)",
            labels=["reason"],
        )
        waiting.add_metric(["turn"], jobs.waiting)
        waiting.add_metric(["budget"], jobs.deferred)
        families.append(waiting)
        return families
