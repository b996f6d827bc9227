"""The first five minutes, as a newcomer and an operator meet them: `focus-app run` (what `make
run` starts) in a checkout of its own, with no variables typed; the README's lines beside it; a
second checkout on the same machine; production printing no secret; Flower started after the
worker, its password on no command line.

Each run is the real thing: embedded PostgreSQL and Redis (or the test servers), gunicorn, a
prefork worker, beat and Flower under honcho, stopped with Ctrl-C (SIGINT) at the end.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from focus_app.devservers import free_port
from tests.conftest import ROOT
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# What a newcomer's shell has: no FOCUS_ENV, DATABASE_URL, REDIS_URL or secrets.
BARE_ENV = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
STRONG = {
    "JWT_SECRET": "Qm4-Xv9zR2_kLw7pT1sNc8bYfE3hJa6u",
    "ADMIN_API_KEY": "Hd2_pZ8wK5-yRe1LqV7cNx3MbF9tGs0j",
    "FLOWER_BASIC_AUTH": "ops:Wn4-kQz8Lr2_Vx7pTb3mYc5h",
}


@dataclass
class Run:
    """One `focus-app run` in its own checkout directory, its output collected in a file."""

    checkout: Path
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def banner(self, name: str) -> str:
        match = re.search(rf"^  {name} {{2,}}(\S+)", self.output(), re.MULTILINE)
        assert match, f"no {name!r} line in:\n{self.output()[-3000:]}"
        return match.group(1)

    @property
    def api(self) -> str:
        return self.banner("API")

    def stop(self) -> int:
        """Ctrl-C, as a person stops it; the process group is killed if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        return self.process.returncode


def new_checkout(tmp: Path, name: str) -> Path:
    """What a clone brings that `focus-app run` reads from its directory: the Procfile."""
    checkout = tmp / name
    checkout.mkdir()
    shutil.copy(ROOT / "Procfile", checkout / "Procfile")
    return checkout


def start_run(checkout: Path, env: dict[str, str]) -> Run:
    log = checkout / "run.log"
    process = subprocess.Popen(
        [str(BIN / "focus-app"), "run"],
        cwd=checkout,
        env={**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "LOG_LEVEL": "INFO"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, for the kill of last resort
    )
    run = Run(checkout, process, log)
    try:
        wait_for(lambda: "Ctrl-C stops everything" in run.output() or process.poll() is not None, timeout=180)
        assert process.poll() is None, run.output()[-3000:]
        wait_for(lambda: http(run.api + "/health")[0] == 200, timeout=120, interval=0.5)
    except BaseException:
        run.stop()
        raise
    return run


def http(url: str, *, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


def command(checkout: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A README line typed in a second terminal in the same checkout."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=checkout,
        env=env or BARE_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(child) for child in children.read_text().split()] if children.exists() else []
    return found + [grandchild for child in found for grandchild in descendants(child)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Iterator[Run]:
    """`make run` in a fresh checkout with no variables: embedded servers, generated secrets."""
    run = start_run(new_checkout(tmp_path_factory.mktemp("checkouts"), "first"), BARE_ENV)
    yield run
    assert run.stop() in (0, -signal.SIGINT, 130)
    assert not (run.checkout / ".data" / "dev-run.json").exists()


def test_the_readme_lines_work_as_printed_beside_make_run(first_run):
    """`celery -A workers call` and `focus-app token` failed with "invalid setting REDIS_URL/
    JWT_SECRET: is required" unless the variables were typed: they find the running servers now."""
    token = command(first_run.checkout, "focus-app", "token", "alice")
    assert token.returncode == 0, token.stderr
    bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}

    for n in range(3):
        status, started = http(
            first_run.api + "/focus-sessions/start", method="POST", body={}, headers=bearer
        )
        assert status == 201, started
        status, ended = http(
            f"{first_run.api}/focus-sessions/{started['id']}/end",
            method="POST",
            body={"was_completed": True, "focus_score": 4, "interruption_count": 1},
            headers=bearer,
        )
        assert status == 200, ended
        if n == 0:
            # A first session has nothing to compare with yet, and says so.
            _, insights = http(f"{first_run.api}/focus-sessions/{started['id']}/insights", headers=bearer)
            messages = {insight["metric"]: insight["message"] for insight in insights["insights"]}
            assert "nothing to compare with yet" in messages["interruptions"]

    call = command(first_run.checkout, "celery", "-A", "workers", "call", "focus.update_profiles")
    assert call.returncode == 0, call.stderr
    profile = wait_for(
        lambda: (lambda r: r[1] if r[1] and r[1].get("status") == "ready" else None)(
            http(first_run.api + "/focus-sessions/profile", headers=bearer)
        ),
        timeout=120,
        interval=1,
    )
    assert profile["profile"]["total_sessions_count"] == 3


def test_production_never_reads_the_running_development_servers(first_run):
    refused = command(
        first_run.checkout, "focus-app", "token", "alice", env={**BARE_ENV, "FOCUS_ENV": "production"}
    )

    assert refused.returncode != 0
    assert "invalid setting" in refused.stderr and "is required" in refused.stderr


def test_flower_starts_after_the_worker_and_its_password_is_on_no_command_line(first_run):
    flower = f"http://127.0.0.1:{first_run.banner('Flower').rsplit(':', 1)[1]}"
    credentials = re.search(r"user:password (\S+)\)", first_run.output()).group(1)
    password = credentials.split(":", 1)[1]
    auth = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

    workers = wait_for(lambda: http(flower + "/api/workers", headers=auth)[1], timeout=120, interval=1)

    assert len(workers) == 1  # known from Flower's first inspection, no refresh needed
    assert "Inspect method" not in first_run.output()
    for pid in [first_run.process.pid, *descendants(first_run.process.pid)]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        assert password not in argv, argv


def test_a_second_checkout_runs_beside_the_first(first_run, tmp_path):
    """Embedded Redis always took port 16379 and gunicorn's control socket was shared."""
    second = start_run(new_checkout(tmp_path, "second"), BARE_ENV)
    try:
        assert second.api != first_run.api
        assert http(second.api + "/health") == (200, {"status": "ok"})
        assert http(first_run.api + "/health") == (200, {"status": "ok"})
        redis_urls = {run.output().split("embedded Redis: ")[1].split()[0] for run in (first_run, second)}
        assert len(redis_urls) == 2
        for run in (first_run, second):
            assert (run.checkout / ".data" / "gunicorn.ctl").is_socket()
        # Each checkout's README lines reach its own servers.
        for run in (first_run, second):
            token = command(run.checkout, "focus-app", "token", "bob").stdout.strip()
            secret = json.loads((run.checkout / ".data" / "dev-secrets.json").read_text())["JWT_SECRET"]
            assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "bob"
    finally:
        second.stop()


def test_a_port_that_was_asked_for_and_is_taken_is_named_with_what_to_change(first_run, tmp_path):
    taken = first_run.api.split(":")[2].split("/")[0]
    checkout = new_checkout(tmp_path, "third")

    refused = subprocess.run(
        [str(BIN / "focus-app"), "run"],
        cwd=checkout,
        env={**BARE_ENV, "PORT": taken},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert refused.returncode != 0
    assert re.search(
        rf"port {taken} \(PORT\) is in use: choose another, e.g. PORT=\d+ make run", refused.stderr
    )


def test_production_prints_no_secret(test_settings, tmp_path):
    """It printed the admin key, the Flower password, a 30-day token and the database URL with its
    password."""
    password = "db-pass-7Kq2Zx9Lm4"
    database_url = test_settings.database_url.replace("postgres:@", f"postgres:{password}@", 1)
    assert password in database_url  # trust authentication ignores it; the URL still carries it
    env = {
        **BARE_ENV,
        **STRONG,
        "FOCUS_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": test_settings.redis_url,
        "PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
    }
    run = start_run(new_checkout(tmp_path, "production"), env)
    try:
        time.sleep(3)  # the processes' own start-up lines too
    finally:
        run.stop()
    output = run.output()

    assert "from the environment (production prints none)" in output
    secrets = [
        STRONG["JWT_SECRET"],
        STRONG["ADMIN_API_KEY"],
        STRONG["FLOWER_BASIC_AUTH"].split(":")[1],
        password,
    ]
    for secret in secrets:
        assert secret not in output
    assert "Dev token" not in output and "eyJ" not in output  # no bearer token either
    assert not (run.checkout / ".data" / "dev-run.json").exists()
