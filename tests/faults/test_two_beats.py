"""Two beat processes at once against one broker: each periodic job runs once per slot.

Both beats publish every tick (the broker carries about twice the messages); the slot key each
periodic task takes in `job_runs` (unique per job and slot) lets exactly one of each pair run and
answers `skipped` to the other.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from sqlalchemy import select

from focus_app.models import JobRun
from tests.faults.harness import wait_for

pytestmark = pytest.mark.faults

INTERVAL = 2
RUN_FOR_SECONDS = 14
JOBS = ("focus.update_profiles", "intelligence.retry_failed")
FAST = {
    "PROFILE_UPDATE_INTERVAL_SECONDS": str(INTERVAL),
    "INTELLIGENCE_RETRY_INTERVAL_SECONDS": str(INTERVAL),
}


def _results(client) -> list[dict]:
    metas = [json.loads(client.get(key)) for key in client.scan_iter(match="celery-task-meta-*")]
    return [meta for meta in metas if meta.get("name") in JOBS and meta["status"] == "SUCCESS"]


def test_two_beats_run_each_periodic_job_once_per_slot(faults):
    worker = faults.worker("beats", "profiles,intelligence", **FAST)
    wait_for(lambda: "ready." in worker.output(), 60, what="worker ready")
    beats = [faults.beat(f"beat-{n}", **FAST) for n in (1, 2)]
    time.sleep(RUN_FOR_SECONDS)
    for beat in beats:
        assert beat.alive()
        beat.stop()
    client = faults.redis_client
    wait_for(lambda: client.llen("profiles") == 0 and client.llen("intelligence") == 0, 30, what="drained")
    wait_for(lambda: client.hlen("unacked") == 0, 30, what="nothing in flight")

    results = _results(client)
    runs = faults.db().execute(select(JobRun.job_name, JobRun.slot).where(JobRun.trigger == "beat")).all()
    for job in JOBS:
        executed = [meta["result"] for meta in results if meta["name"] == job]
        statuses = Counter(result["status"] for result in executed)
        slots = [slot for name, slot in runs if name == job]
        skipped = statuses["skipped"]
        print(f"FAULTS two beats, {job}: {len(executed)} messages, {len(slots)} runs, {skipped} skipped")
        # Both beats fired: about two messages per slot, yet one run per slot.
        assert len(slots) >= RUN_FOR_SECONDS // INTERVAL - 2
        assert len(set(slots)) == len(slots)
        assert skipped >= len(slots) - 2
        assert len(executed) == len(slots) + skipped
