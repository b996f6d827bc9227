"""Servers, settings and a real Celery worker process for the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from focus_app.devservers import free_port, start_postgres, start_redis
from focus_app.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef0123456789"
# Production settings refuse one value for both secrets.
ADMIN_KEY = "bench-admin-key-9f8e7d6c5b4a39281706"


@contextmanager
def servers():
    """BENCH_DATABASE_URL / BENCH_REDIS_URL (wiped), else fresh embedded servers."""
    started = []
    database_url = os.environ.get("BENCH_DATABASE_URL")
    redis_url = os.environ.get("BENCH_REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="focus-bench-") as scratch:
        if not database_url:
            postgres = start_postgres(Path(scratch) / "pg", "focus_bench")
            started.append(postgres)
            database_url = postgres.url
        if not redis_url:
            redis_server = start_redis(Path(scratch) / "redis", free_port())
            started.append(redis_server)
            redis_url = redis_server.url
        upgrade(database_url)
        try:
            yield database_url, redis_url
        finally:
            for server in reversed(started):
                server.stop()


def environment(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": SECRET,
        "ADMIN_API_KEY": ADMIN_KEY,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


@contextmanager
def worker_process(env: dict[str, str], queues: str, concurrency: int):
    """`celery -A workers worker` as deployed (prefork), stopped with a warm shutdown."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "-Q",
            queues,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def wait_until(predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark did not finish in time")
