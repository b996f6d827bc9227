"""The web tier during a Redis outage: real gunicorn (2 processes x 4 threads, the Procfile's 8
request slots) under a load of concurrent clients, Redis stopped (then, second case, refusing
writes with NOREPLICAS) for OUTAGE_SECONDS.

Every request is recorded with its status and time. Requests that publish (a chat post, POST
/profile/analyze, the admin trigger) answer their normal status within 1 s, the others are not
slowed, nothing answers 5xx; once Redis is back the sweepers publish what the outage left in
PostgreSQL and every job completes. The worker and beat start after the outage: how workers live
through a Redis that refuses writes is another test's subject.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis
import requests
from sqlalchemy import func, select

from focus_app.devservers import free_port
from focus_app.models import JobRun
from focus_app.models.analysis import AnalysisJob
from tests.conftest import TEST_ADMIN_KEY
from tests.faults.harness import wait_for
from tests.integration.factories import make_user

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BEFORE_SECONDS, OUTAGE_SECONDS, AFTER_SECONDS = 5, 15, 5
PUBLISH_LIMIT_SECONDS = 1.0
FAST_SWEEPERS = {
    "ANALYSIS_SWEEP_INTERVAL_SECONDS": "2",
    "ANALYSIS_REPUBLISH_AFTER_SECONDS": "2",
    "UNIT_REPUBLISH_AFTER_SECONDS": "2",
    "UNIT_SWEEP_INTERVAL_SECONDS": "2",
}
PUBLISHING = ("analyze", "chat", "trigger")
NORMAL_STATUS = {"analyze": 202, "chat": 201, "trigger": 202, "health": 200, "active": 200}
PUBLISHING_CLIENTS, READING_CLIENTS = 3, 8
ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
TRIGGERED = (JobRun.job_name == "intelligence.weekly") & (JobRun.trigger == "api")


@dataclass(frozen=True)
class Answer:
    kind: str
    phase: str
    status: int
    seconds: float


class Load:
    """Clients that keep sending requests until stopped; every answer is kept with its phase."""

    def __init__(self, base: str, auth_headers: Callable[[str], dict[str, str]], users: list[str]):
        self.base, self.auth_headers = base, auth_headers
        self.users = iter(users)
        self.users_lock = threading.Lock()
        self.phase = "before"
        self.answers: list[Answer] = []
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._publisher, args=(n,), daemon=True)
            for n in range(PUBLISHING_CLIENTS)
        ] + [threading.Thread(target=self._reader, args=(n,), daemon=True) for n in range(READING_CLIENTS)]

    def _send(self, http: requests.Session, kind: str, method: str, path: str, **kwargs) -> None:
        phase, started = self.phase, time.monotonic()
        try:
            status = http.request(method, self.base + path, timeout=30, **kwargs).status_code
        except requests.RequestException:
            status = 599
        self.answers.append(Answer(kind, phase, status, time.monotonic() - started))

    def _next_user(self) -> str:
        with self.users_lock:
            return next(self.users)

    def _publisher(self, n: int) -> None:
        """A fresh user per request: each analyze, fifth chat message and trigger enqueues a job."""
        http = requests.Session()
        for kind in itertools.cycle(PUBLISHING[n:] + PUBLISHING[:n]):
            if self.stopped.is_set():
                return
            user = self._next_user()
            if kind == "analyze":
                body = {"context_type": "study"}
                self._send(http, kind, "POST", "/profile/analyze", json=body, headers=self.auth_headers(user))
            elif kind == "chat":
                for m in range(5):
                    body = {"context_type": "work", "content": f"planning the week, note {m}"}
                    self._send(
                        http, kind, "POST", "/chat/messages", json=body, headers=self.auth_headers(user)
                    )
            else:
                body = {"user_ids": [user], "force_refresh": True}
                self._send(http, kind, "POST", "/admin/intelligence/trigger", json=body, headers=ADMIN)
            time.sleep(0.2)

    def _reader(self, n: int) -> None:
        http = requests.Session()
        headers = self.auth_headers(f"reader-{n}")
        while not self.stopped.is_set():
            self._send(http, "health", "GET", "/health")
            self._send(http, "active", "GET", "/focus-sessions/active", headers=headers)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _figures(case: str, answers: list[Answer], durations: dict[str, float], published_after: float) -> str:
    lines = [f"WEB DURING REDIS OUTAGE ({case}), 8 gunicorn slots, {len(answers)} requests"]
    for phase in ("before", "during", "after"):
        for group, kinds in (("publishing", PUBLISHING), ("other", ("health", "active"))):
            chosen = [a for a in answers if a.phase == phase and a.kind in kinds]
            times = [a.seconds for a in chosen]
            statuses: dict[int, int] = {}
            for answer in chosen:
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
            lines.append(
                f"  {phase:6} {group:10} {len(chosen):5} requests ({len(chosen) / durations[phase]:6.1f}/s) "
                f"statuses {dict(sorted(statuses.items()))} "
                f"p50 {statistics.median(times) * 1000 if times else 0:6.1f} ms "
                f"p99 {_percentile(times, 0.99) * 1000:6.1f} ms max {max(times, default=0) * 1000:6.1f} ms"
            )
    lines.append(f"  last job published {published_after:.1f} s after Redis accepted writes again")
    return "\n".join(lines)


def _refuse_writes(client: redis.Redis) -> None:
    client.config_set("min-replicas-to-write", 1)


def _accept_writes(client: redis.Redis) -> None:
    client.config_set("min-replicas-to-write", 0)


@pytest.mark.parametrize("case", ["stopped", "refusing writes"])
def test_publishing_never_holds_a_web_request(faults, auth_headers, case):
    db = faults.db()
    users = [f"load-{n:04}" for n in range(800)]
    for user in users:
        make_user(db, user)
    port = free_port()
    web = faults.web(port, LOG_LEVEL="WARNING")
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_for(lambda: _healthy(base), 60, interval=0.2, what="gunicorn answering")
    control = redis.Redis.from_url(faults.redis.url)
    load = Load(base, auth_headers, users)

    load.start()
    time.sleep(BEFORE_SECONDS)
    load.phase = "during"
    if case == "stopped":
        faults.redis.stop()
    else:
        _refuse_writes(control)
    time.sleep(OUTAGE_SECONDS)
    if case == "stopped":
        faults.redis.start()
        control = redis.Redis.from_url(faults.redis.url)
    else:
        _accept_writes(control)
    back_at = time.monotonic()
    load.phase = "after"
    time.sleep(AFTER_SECONDS)
    load.stop()
    answers = load.answers

    # The outage's work is in PostgreSQL; the worker and beat (fast sweepers) publish and do it.
    faults.worker("web-outage", "analysis,intelligence,default", concurrency=2, **FAST_SWEEPERS)
    faults.beat("beat-web-outage", **FAST_SWEEPERS)

    def unpublished() -> int:
        db = _fresh(faults)
        jobs = db.scalar(
            select(func.count()).select_from(AnalysisJob).where(AnalysisJob.celery_task_id.is_(None))
        )
        runs = db.scalar(
            select(func.count()).select_from(JobRun).where(TRIGGERED, JobRun.status == "pending")
        )
        return jobs + runs

    wait_for(lambda: unpublished() == 0, 90, interval=0.2, what="every job published")
    published_after = time.monotonic() - back_at

    def all_done() -> bool:
        db = _fresh(faults)
        open_jobs = db.scalar(
            select(func.count()).select_from(AnalysisJob).where(AnalysisJob.status != "completed")
        )
        open_runs = db.scalar(
            select(func.count()).select_from(JobRun).where(TRIGGERED, JobRun.status != "success")
        )
        return open_jobs == 0 and open_runs == 0

    wait_for(all_done, 90, interval=0.5, what="every job done")
    durations = {"before": BEFORE_SECONDS, "during": OUTAGE_SECONDS, "after": AFTER_SECONDS}
    report = _figures(case, answers, durations, published_after)
    print(report)

    during = [a for a in answers if a.phase == "during"]
    slow_publishing = [a for a in answers if a.kind in PUBLISHING and a.seconds >= PUBLISH_LIMIT_SECONDS]
    wrong_status = [a for a in answers if a.status != NORMAL_STATUS[a.kind]]
    assert not wrong_status, f"{wrong_status[:5]}\n{report}"
    assert not slow_publishing, f"{slow_publishing[:5]}\n{report}"
    assert sum(a.kind in PUBLISHING for a in during) >= 20, report
    readers_during = [a.seconds for a in during if a.kind not in PUBLISHING]
    assert _percentile(readers_during, 0.99) < 1.0, report
    before_rate = sum(a.phase == "before" for a in answers) / BEFORE_SECONDS
    assert len(during) / OUTAGE_SECONDS > 0.5 * before_rate, report
    db = _fresh(faults)
    accepted = {kind: sum(a.kind == kind for a in answers) for kind in PUBLISHING}
    assert (
        db.scalar(select(func.count()).select_from(AnalysisJob))
        == accepted["analyze"] + accepted["chat"] // 5
    )
    assert db.scalar(select(func.count()).select_from(JobRun).where(TRIGGERED)) == accepted["trigger"]
    assert web.alive()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _fresh(stack):
    db = stack.db()
    db.rollback()
    return db
