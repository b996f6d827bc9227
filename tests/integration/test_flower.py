"""Flower, started as operators start it, refuses visitors without its basic-auth credentials.
The credentials come from FLOWER_BASIC_AUTH in its environment (Flower reads FLOWER_* variables
itself), never from its command line, where every local user could read them in `ps`."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from focus_app.devservers import free_port
from tests.conftest import ROOT, process_environment
from tests.integration.conftest import wait_for

CREDENTIALS = "operator:flower-password-0123456789"


def status_of(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture
def flower(test_settings):
    port = free_port()
    env = process_environment(test_settings, FLOWER_BASIC_AUTH=CREDENTIALS)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "flower", "--address=127.0.0.1", f"--port={port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: status_of(base + "/healthcheck") == 200, timeout=60, interval=0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_flower_pages_and_api_need_credentials(flower):
    for path in ("/", "/workers", "/tasks", "/api/workers", "/api/tasks"):
        assert status_of(flower + path) == 401, path
        assert status_of(flower + path, "operator:wrong") == 401, path
    assert status_of(flower + "/api/workers", CREDENTIALS) == 200
    assert status_of(flower + "/", CREDENTIALS) == 200
