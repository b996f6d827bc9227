"""Real servers for the tests.

TEST_DATABASE_URL / TEST_REDIS_URL point the tests at servers of your own (the database is
wiped); without them the tests start embedded PostgreSQL and Redis from pip packages, so
`make test` passes on a machine that has only Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from focus_app.config import Settings
from focus_app.db import sqlalchemy_url
from focus_app.devservers import ensure_database, free_port, start_postgres, start_redis

TEST_SECRET = "test-secret-0123456789abcdef0123456789"
TEST_ADMIN_KEY = "test-admin-key-0123456789abcdef"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    server = None
    if url:
        url = _per_test_process(url)
        ensure_database(url)
        _reset_schema(url)
    else:
        server = start_postgres(tmp_path_factory.mktemp("postgres") / "data", "focus_test")
        url = server.url
    yield url
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    server = None
    if url:
        url = _per_test_process(url)
        redis.Redis.from_url(url).flushdb()
    else:
        server = start_redis(tmp_path_factory.mktemp("redis"), free_port())
        url = server.url
    yield url
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def test_settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url)


def make_settings(database_url: str, redis_url: str, **overrides) -> Settings:
    values = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "jwt_secret": TEST_SECRET,
        "admin_api_key": TEST_ADMIN_KEY,
        "profile_batch_size": 50,
        "intelligence_batch_size": 50,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def process_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a process a test starts (`celery call`, Flower), on the test servers."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "JWT_SECRET": TEST_SECRET,
        "ADMIN_API_KEY": TEST_ADMIN_KEY,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def celery_call(settings: Settings, task_name: str, kwargs: str) -> str:
    """`celery -A workers call TASK --kwargs ...` as an operator types it; the task id it prints."""
    completed = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "call", task_name, "--kwargs", kwargs],
        cwd=ROOT,
        env=process_environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip().splitlines()[-1]


def _per_test_process(url: str) -> str:
    """`make test` runs three pytest processes (xdist): each gets a database of its own on your
    servers (`<name>_gw1`, Redis database 1 + n), since each wipes what it uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    parsed = make_url(url)
    if parsed.drivername.startswith("redis"):
        return parsed.set(database=str(1 + int(worker.removeprefix("gw")))).render_as_string(
            hide_password=False
        )
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)


def _reset_schema(url: str) -> None:
    engine = create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


ROOT = Path(__file__).resolve().parent.parent
