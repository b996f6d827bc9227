"""Test-only tasks for the poison-message test, loaded into a worker with `-I tests.faults.poison_tasks`."""

from __future__ import annotations

import os
import signal

from celery import shared_task

from focus_app.extensions import redis_client

CURED_KEY = "focus:faultsuite:cured"


@shared_task(bind=True, name="faultsuite.kill_own_worker")
def kill_own_worker(self, marker):
    """SIGKILL its own pool process on every delivery, until the test sets the cured key."""
    client = redis_client()
    if not client.exists(CURED_KEY):
        os.kill(os.getpid(), signal.SIGKILL)
    client.set(f"focus:faultsuite:ran:{marker}", self.request.id, ex=600)
    return marker
