"""`focus-app`: run the whole system locally, apply migrations, mint a development token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import click

from focus_app.config import DEV_RUN_FILE, ConfigError, Settings, dev_secret, record_dev_servers

DATA_DIR = Path(".data")
# Ports `focus-app run` takes unless told otherwise; a second checkout's run moves to free ones.
DEFAULT_PORTS = {"PORT": 8000, "FLOWER_PORT": 5555, "REDIS_PORT": 16379}


@click.group()
def main() -> None:
    """Focus analytics job system."""


@main.command()
def migrate() -> None:
    """Apply the Alembic migrations to DATABASE_URL."""
    from focus_app.migrate import upgrade

    settings = _settings(os.environ)
    upgrade(settings.database_url)
    click.echo("migrations applied")


@main.command()
@click.argument("user_id")
@click.option("--hours", default=24 * 30, show_default=True, help="Lifetime of the token.")
def token(user_id: str, hours: float) -> None:
    """Print a bearer token for USER_ID signed with JWT_SECRET (development and scripts)."""
    from focus_app.api.auth import issue_token

    settings = _settings(os.environ)
    click.echo(
        issue_token(
            settings.jwt_secret,
            user_id,
            hours=hours,
            algorithm=settings.jwt_algorithm,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    )


@main.command()
def run() -> None:
    """API, worker, beat and Flower on loopback, with embedded servers unless URLs are set."""
    from focus_app.devservers import start_postgres, start_redis
    from focus_app.migrate import upgrade

    env = dict(os.environ)
    env.setdefault("FOCUS_ENV", "development")
    env.setdefault("BEAT_SCHEDULE_FILE", str(DATA_DIR / "celerybeat-schedule"))
    # gunicorn's control socket defaults to one per user ($XDG_RUNTIME_DIR or ~/.gunicorn): one per
    # checkout instead, so two checkouts' runs do not take each other's.
    env.setdefault("GUNICORN_CMD_ARGS", f"--control-socket {DATA_DIR / 'gunicorn.ctl'}")
    DATA_DIR.mkdir(exist_ok=True)
    for name in ("PORT", "FLOWER_PORT") + (() if env.get("REDIS_URL") else ("REDIS_PORT",)):
        env[name] = str(_free_port_for(env, name))
    servers = []  # embedded servers, stopped after the processes that use them
    if not env.get("DATABASE_URL"):
        postgres = start_postgres(DATA_DIR / "postgres", "focus")
        servers.append(postgres)
        env["DATABASE_URL"] = postgres.url
        click.echo(f"embedded PostgreSQL: {postgres.url}")
    if not env.get("REDIS_URL"):
        redis_server = start_redis(DATA_DIR / "redis", int(env["REDIS_PORT"]))
        servers.append(redis_server)
        env["REDIS_URL"] = redis_server.url
        click.echo(f"embedded Redis: {redis_server.url}")

    if not env.get("FLOWER_BASIC_AUTH"):
        if env["FOCUS_ENV"] == "production":
            raise SystemExit("invalid setting FLOWER_BASIC_AUTH: is required (user:password)")
        env["FLOWER_BASIC_AUTH"] = "admin:" + dev_secret("FLOWER_PASSWORD")[0]
    settings = _settings(env)
    env["JWT_SECRET"], env["ADMIN_API_KEY"] = settings.jwt_secret, settings.admin_api_key
    upgrade(settings.database_url)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    click.echo(_banner(env, settings))
    if not settings.is_production:
        record_dev_servers(os.getpid(), settings.database_url, settings.redis_url)

    honcho = [str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile", "-p", env["PORT"]]
    process = subprocess.Popen(honcho, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to honcho too; give it time to stop its children.
        process.send_signal(signal.SIGINT)
        code = process.wait()
    finally:
        DEV_RUN_FILE.unlink(missing_ok=True)
        for server in servers:
            server.stop()
    sys.exit(code)


@main.command("wait-for-workers")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait before giving up.")
def wait_for_workers(timeout: float) -> None:
    """Wait until a Celery worker answers a ping (Flower's start-up inspection then finds it).
    Always exits 0: Flower starts anyway, and under honcho a process that exits stops them all."""
    from kombu.exceptions import OperationalError

    from workers import app as celery

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            replies = celery.control.ping(timeout=1.0)
        except (OperationalError, OSError):
            replies = []  # the broker is not up yet either
        if replies:
            click.echo(f"workers answering: {', '.join(sorted(name for reply in replies for name in reply))}")
            return
        time.sleep(1)
    click.echo(f"no worker answered within {timeout:.0f} s; starting anyway", err=True)


def _banner(env: Mapping[str, str], settings: Settings) -> str:
    """What a person needs to start: URLs always; secrets only in development (production prints
    none: they are in its environment already, and a terminal or its log is no place for them)."""
    port, flower_port = env["PORT"], env["FLOWER_PORT"]
    lines = [
        f"  API docs   http://127.0.0.1:{port}/api/docs",
        f"  API        http://127.0.0.1:{port}/api/v1",
        f"  Operations http://127.0.0.1:{port}/ops  (asks for the admin key)",
        f"  Flower     http://127.0.0.1:{flower_port}",
    ]
    if settings.is_production:
        lines.append("  Secrets    from the environment (production prints none)")
    else:
        from focus_app.api.auth import issue_token

        token = issue_token(
            settings.jwt_secret,
            "dev-user",
            algorithm=settings.jwt_algorithm,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        lines[-1] += f"  (user:password {env['FLOWER_BASIC_AUTH']})"
        lines += [
            f"  Admin key  {settings.admin_api_key}",
            f"  Dev token  {token}",
            "             (user 'dev-user'; more with: .venv/bin/focus-app token USER_ID)",
            "  Trigger    .venv/bin/celery -A workers call focus.update_profiles",
        ]
    return "\n" + "\n".join([*lines, "  Ctrl-C stops everything.", ""])


def _free_port_for(env: Mapping[str, str], name: str) -> int:
    """The port `name` asks for. Unset and its default taken (another checkout's run), the next
    free one; set and taken, stop and say what to change."""
    from focus_app.devservers import port_is_free

    host = env.get("HOST", "127.0.0.1") if name == "PORT" else "127.0.0.1"
    if env.get(name):
        port = int(env[name])
        if not port_is_free(host, port):
            suggestion = next(p for p in range(port + 1, port + 200) if port_is_free(host, p))
            raise SystemExit(
                f"port {port} ({name}) is in use: choose another, e.g. {name}={suggestion} make run"
            )
        return port
    default = DEFAULT_PORTS[name]
    port = next((p for p in range(default, default + 200) if port_is_free(host, p)), default)
    if port != default:
        click.echo(f"port {default} is in use (another checkout's `make run`?): {name}={port}")
    return port


def _settings(env: Mapping[str, str]) -> Settings:
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    for name in settings.generated_secrets:
        click.echo(f"{name} not set: generated a development value (kept in .data/dev-secrets.json)")
    return settings
