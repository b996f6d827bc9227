"""A stack of real processes per test module: PostgreSQL and Redis that a test may stop, and
Celery worker / beat subprocesses started (and always stopped) by each test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import _state as celery_state
from flask import Flask
from sqlalchemy import text

from focus_app import create_app
from focus_app.api.auth import issue_token
from focus_app.devservers import free_port
from focus_app.migrate import upgrade
from focus_app.models import Base
from tests.conftest import TEST_SECRET, make_settings
from tests.faults.harness import (
    CeleryProcess,
    ManagedProcess,
    Postgres,
    Redis,
    environment,
    gunicorn_argv,
    worker_args,
)

TABLES = [table.name for table in Base.metadata.sorted_tables]


@dataclass
class Stack:
    postgres: Postgres
    redis: Redis
    app: Flask
    logs: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def redis_client(self) -> redis.Redis:
        return self.app.extensions["redis"]

    def db(self):
        return self.app.extensions["db"].session()

    def env(self, **extra: str) -> dict[str, str]:
        return environment(self.postgres.url, self.redis.url, **extra)

    def worker(self, name: str, queues: str, *extra: str, concurrency: int = 2, **env: str) -> CeleryProcess:
        process = CeleryProcess(
            worker_args(name, queues, concurrency, *extra), self.env(**env), self.logs / f"{name}.log"
        )
        self.processes.append(process)
        return process

    def beat(self, name: str, **env: str) -> CeleryProcess:
        schedule = self.logs / f"{name}-schedule"
        process = CeleryProcess(
            ["beat", "--loglevel", "INFO", "--schedule", str(schedule)],
            self.env(**env),
            self.logs / f"{name}.log",
        )
        self.processes.append(process)
        return process

    def web(self, port: int, **env: str) -> ManagedProcess:
        """gunicorn serving the app on 127.0.0.1:port, as the Procfile starts it."""
        process = ManagedProcess(
            gunicorn_argv(port, self.logs / f"gunicorn-{port}.ctl"),
            self.env(**env),
            self.logs / f"web-{port}.log",
        )
        self.processes.append(process)
        return process

    def send(self, name: str, *args, **kwargs) -> str:
        return self.app.extensions["celery"].send_task(name, args=list(args), kwargs=kwargs).id


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # A folder of its own, not pytest's numbered tmp dirs that concurrent pytest runs prune.
    root = Path(tempfile.mkdtemp(prefix="focus-faults-"))
    previous_default = celery_state.default_app
    postgres = Postgres(root / "pg", "focus_faults")
    redis_server = Redis(root / "redis", free_port())
    try:
        upgrade(postgres.url)
        app = create_app(make_settings(postgres.url, redis_server.url))
        (root / "logs").mkdir()
        yield Stack(postgres, redis_server, app, root / "logs")
    finally:
        redis_server.close()
        postgres.close()
        # Building an app makes its Celery app the process default; give the previous one back.
        if previous_default is not None:
            previous_default.set_default()
            previous_default.set_current()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def faults(stack: Stack) -> Iterator[Stack]:
    """Clean tables and Redis before a test; stop every process it started after it."""
    with stack.app.extensions["db"].engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    stack.redis_client.flushdb()
    try:
        yield stack
    finally:
        for process in stack.processes:
            process.stop()
        stack.processes.clear()
        stack.app.extensions["db"].end_session()


@pytest.fixture
def auth_headers():
    def headers(user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(TEST_SECRET, user_id)}"}

    return headers
