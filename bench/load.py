"""Load: session start/end and chat posts for many users against gunicorn, next to a plain Flask
hello-world on the same gunicorn settings (the Procfile's web line) in the same run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m bench.load [--users 32] [--seconds 20] [--accounts 1000]

Locust (as a library, headless) keeps one connection per simulated user, without think time.
Three scenarios, one after the other: hello-world; session start + end; chat posts. Reports
requests/s and p50/p99 latency per endpoint, and each scenario's throughput as a share of
hello-world's. Goal (issue 6): the session endpoints at least half, p99 under 50 ms at 32
connections.
"""

from __future__ import annotations

# Locust patches the standard library with gevent; it must come before anything opens sockets.
from locust import FastHttpUser, events, task  # isort: skip
from locust.env import Environment  # isort: skip

import argparse
import itertools
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import gevent

from bench.common import ROOT, SECRET, environment, servers, wait_until
from focus_app.api.auth import issue_token
from focus_app.devservers import free_port

FOCUS_APP = '"focus_app:create_app()"'
HELLO_APP = '"bench.hello:create_app()"'


def procfile_web_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise SystemExit("Procfile has no web line")


@contextmanager
def gunicorn(app_spec: str, env: dict[str, str]):
    """The Procfile's web command, exactly, with only the application swapped."""
    command = procfile_web_command()
    assert FOCUS_APP in command, "the Procfile's web line no longer names the app as expected"
    port = free_port()
    process = subprocess.Popen(
        ["sh", "-c", "exec " + command.replace(FOCUS_APP, app_spec)],
        cwd=ROOT,
        # The venv's gunicorn, as under `make run`, even when the venv is not activated.
        env={
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PATH": f"{Path(sys.executable).parent}:{env['PATH']}",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base + ("/hello" if "hello" in app_spec else "/api/v1/health")), 60, 0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class HelloUser(FastHttpUser):
    @task
    def hello(self):
        self.client.get("/hello", name="hello")


class AccountUser(FastHttpUser):
    """Each simulated connection owns a disjoint slice of the accounts, so no two ever race for
    the same user's active session."""

    abstract = True
    tokens: list[str] = []
    slots = itertools.count()
    connections = 32

    def on_start(self):
        slot = next(self.slots) % self.connections
        self.mine = itertools.cycle(self.tokens[slot :: self.connections])

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {next(self.mine)}"}


class SessionUser(AccountUser):
    """Start a session, end it: the two session endpoints, one after the other."""

    @task
    def start_and_end(self):
        headers = self.headers()
        with self.client.post(
            "/api/v1/focus-sessions/start", json={"expected_duration": 25}, headers=headers,
            name="session start", catch_response=True,
        ) as started:  # fmt: skip
            if started.status_code != 201:
                started.failure(f"{started.status_code} {started.text[:200]}")
                return
            session_id = started.json()["id"]
        self.client.post(
            f"/api/v1/focus-sessions/{session_id}/end", json={"was_completed": True, "focus_score": 4},
            headers=headers, name="session end",
        )  # fmt: skip


class ChatUser(AccountUser):
    """Chat posts; every fifth message of a user and context is due for an analysis."""

    @task
    def post(self):
        self.client.post(
            "/api/v1/chat/messages", json={"context_type": "work", "content": "long shift again today"},
            headers=self.headers(), name="chat post",
        )  # fmt: skip


def drive(user_class, base: str, users: int, seconds: float, warmup: float) -> Environment:
    env = Environment(user_classes=[user_class], host=base, events=events)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(warmup)
    env.stats.reset_all()
    gevent.sleep(seconds)
    elapsed = time.time() - env.stats.total.start_time
    runner.quit()
    env.elapsed = elapsed
    return env


def report(label: str, env: Environment) -> dict[str, float]:
    rows = {}
    for (name, _method), entry in sorted(env.stats.entries.items()):
        rows[name] = {
            "rps": entry.num_requests / env.elapsed,
            "p50": entry.get_response_time_percentile(0.5),
            "p99": entry.get_response_time_percentile(0.99),
            "failures": entry.num_failures,
            "requests": entry.num_requests,
        }
        row = rows[name]
        print(
            f"  {label:<9} {name:<14} {row['rps']:8.0f} req/s  p50 {row['p50']:5.1f} ms  "
            f"p99 {row['p99']:5.1f} ms  ({row['requests']} requests, {row['failures']} failed)"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=20, help="measured time per scenario")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--accounts", type=int, default=1000, help="distinct users with tokens")
    args = parser.parse_args()
    AccountUser.tokens = [issue_token(SECRET, f"load-{n}") for n in range(args.accounts)]
    AccountUser.connections = args.users

    with servers() as (database_url, redis_url):
        # INFO: the JSON access line of every request is written, as in production.
        env = environment(database_url, redis_url, LOG_LEVEL="INFO")
        print(f"gunicorn: {procfile_web_command()}")
        print(f"{args.users} connections, {args.seconds:.0f} s per scenario, {args.warmup:.0f} s warm-up")
        with gunicorn(HELLO_APP, env) as base:
            hello = report("hello", drive(HelloUser, base, args.users, args.seconds, args.warmup))["hello"]
        with gunicorn(FOCUS_APP, env) as base:
            sessions = report("sessions", drive(SessionUser, base, args.users, args.seconds, args.warmup))
            chat = report("chat", drive(ChatUser, base, args.users, args.seconds, args.warmup))

    session_rps = sessions["session start"]["rps"] + sessions["session end"]["rps"]
    chat_rps = chat["chat post"]["rps"]
    rows = {**sessions, **chat}
    worst_p99 = max(row["p99"] for row in rows.values())
    print(f"hello-world {hello['rps']:.0f} req/s, p99 {hello['p99']:.1f} ms")
    print(
        f"session endpoints {session_rps:.0f} req/s: {session_rps / hello['rps']:.2f} of hello-world "
        "(goal >= 0.50)"
    )
    print(f"chat posts {chat_rps:.0f} req/s: {chat_rps / hello['rps']:.2f} of hello-world")
    print(f"worst p99 of the focus endpoints: {worst_p99:.1f} ms (goal < 50 ms)")
    failed = sum(row["failures"] for row in rows.values())
    if failed:
        print(f"WARNING: {failed} focus requests failed")


if __name__ == "__main__":
    main()
