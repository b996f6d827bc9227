"""`focus-app`: run the whole system locally, apply migrations, mint a development token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from focus_app.config import ConfigError, Settings, dev_secret

DATA_DIR = Path(".data")
DEFAULT_REDIS_PORT = 16379


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
    from focus_app.api.auth import issue_token
    from focus_app.devservers import start_postgres, start_redis
    from focus_app.migrate import upgrade

    env = dict(os.environ)
    env.setdefault("FOCUS_ENV", "development")
    env.setdefault("BEAT_SCHEDULE_FILE", str(DATA_DIR / "celerybeat-schedule"))
    DATA_DIR.mkdir(exist_ok=True)
    servers = []  # embedded servers, stopped after the processes that use them
    if not env.get("DATABASE_URL"):
        postgres = start_postgres(DATA_DIR / "postgres", "focus")
        servers.append(postgres)
        env["DATABASE_URL"] = postgres.url
        click.echo(f"embedded PostgreSQL: {postgres.url}")
    if not env.get("REDIS_URL"):
        redis_server = start_redis(DATA_DIR / "redis", int(env.get("REDIS_PORT", DEFAULT_REDIS_PORT)))
        servers.append(redis_server)
        env["REDIS_URL"] = redis_server.url
        click.echo(f"embedded Redis: {redis_server.url}")

    settings = _settings(env)
    env["JWT_SECRET"], env["ADMIN_API_KEY"] = settings.jwt_secret, settings.admin_api_key
    if not env.get("FLOWER_BASIC_AUTH"):
        if settings.is_production:
            raise SystemExit("invalid setting FLOWER_BASIC_AUTH: is required (user:password)")
        env["FLOWER_BASIC_AUTH"] = "admin:" + dev_secret("FLOWER_PASSWORD")[0]
    upgrade(settings.database_url)

    port = env.get("PORT", "8000")
    flower_port = env.setdefault("FLOWER_PORT", "5555")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    dev_token = issue_token(
        settings.jwt_secret,
        "dev-user",
        hours=24 * 30,
        algorithm=settings.jwt_algorithm,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    click.echo(
        f"\n  API docs   http://127.0.0.1:{port}/api/docs\n"
        f"  API        http://127.0.0.1:{port}/api/v1\n"
        f"  Operations http://127.0.0.1:{port}/ops  (asks for the admin key)\n"
        f"  Flower     http://127.0.0.1:{flower_port}  (user:password {env['FLOWER_BASIC_AUTH']})\n"
        f"  Admin key  {settings.admin_api_key}\n"
        f"  Dev token  {dev_token}\n"
        f"             (user 'dev-user'; more with: .venv/bin/focus-app token USER_ID)\n"
        f"  Trigger    FOCUS_ENV={env['FOCUS_ENV']} DATABASE_URL='{env['DATABASE_URL']}' "
        f"REDIS_URL='{env['REDIS_URL']}' .venv/bin/celery -A workers call focus.update_profiles\n"
        f"  Ctrl-C stops everything.\n"
    )
    honcho = [str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile", "-p", port]
    process = subprocess.Popen(honcho, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to honcho too; give it time to stop its children.
        process.send_signal(signal.SIGINT)
        code = process.wait()
    finally:
        for server in servers:
            server.stop()
    sys.exit(code)


def _settings(env: Mapping[str, str]) -> Settings:
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    for name in settings.generated_secrets:
        click.echo(f"{name} not set: generated a development value (kept in .data/dev-secrets.json)")
    return settings
