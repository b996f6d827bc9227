"""Beat and worker hosts whose clocks are minutes off run every periodic job on schedule.

How the clocks are moved: libfaketime (the `libfaketime` dev dependency ships the preload library)
is preloaded into the beat and worker subprocesses only, with FAKETIME set to an offset: every
clock they read (time.time, datetime.now, the C library's; not the monotonic clock) is that many
seconds off, pool children included. PostgreSQL, Redis and the test keep the real time.

Two beats, one 5 minutes behind and one 5 minutes ahead, fire every INTERVAL seconds into two
workers skewed the other way (10 minutes between each beat and the worker that disagrees most).
Beat used to stamp each message with an `expires` from its own clock that the worker checked on
its own, so the behind beat's fires were all discarded ("Discarding revoked task"), and the slot
of a run came from the worker's clock, so two workers 10 minutes apart both ran one slot.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import libfaketime
import pytest
from sqlalchemy import select

from focus_app.models import JobRun
from tests.faults.harness import wait_for
from tests.faults.test_two_beats import FAST, INTERVAL, JOBS, RUN_FOR_SECONDS

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SKEW_SECONDS = 300


def skewed(seconds: int) -> dict[str, str]:
    """The environment that moves a subprocess's clocks by `seconds` (libfaketime)."""
    _, preload = libfaketime.get_reload_information()
    return {**FAST, **preload, "FAKETIME": f"{seconds:+d}"}


def _fires(beat_output: str, job: str) -> int:
    return len(re.findall(rf"Sending due task \S+ \({re.escape(job)}\)", beat_output))


def test_beats_and_workers_minutes_apart_run_each_slot_once_and_discard_nothing(faults):
    workers = [
        faults.worker("ahead", "profiles,intelligence", **skewed(SKEW_SECONDS)),
        faults.worker("behind", "profiles,intelligence", **skewed(-SKEW_SECONDS)),
    ]
    for worker in workers:
        wait_for(lambda w=worker: "ready." in w.output(), 60, what="worker ready")
    beats = [
        faults.beat("beat-behind", **skewed(-SKEW_SECONDS)),
        faults.beat("beat-ahead", **skewed(SKEW_SECONDS)),
    ]
    time.sleep(RUN_FOR_SECONDS)
    for beat in beats:
        assert beat.alive(), beat.output()[-2000:]
        beat.stop()
    client = faults.redis_client
    wait_for(lambda: client.llen("profiles") == 0 and client.llen("intelligence") == 0, 30, what="drained")
    wait_for(lambda: client.hlen("unacked") == 0, 30, what="nothing in flight")

    metas = [json.loads(client.get(key)) for key in client.scan_iter(match="celery-task-meta-*")]
    runs = faults.db().execute(select(JobRun.job_name, JobRun.slot, JobRun.started_at)).all()
    discarded = sum(worker.output().count("Discarding revoked task") for worker in workers)
    for job in JOBS:
        fired = {beat.log_path.stem: _fires(beat.output(), job) for beat in beats}
        executed = Counter(
            meta["result"]["status"]
            for meta in metas
            if meta.get("name") == job and meta["status"] == "SUCCESS"
        )
        job_runs = [run for run in runs if run.job_name == job]
        slots = [run.slot for run in job_runs]
        print(
            f"FAULTS clocks ±{SKEW_SECONDS} s, {job}: fired {fired}, executed {dict(executed)}, "
            f"{len(slots)} runs ({len(set(slots))} slots), {discarded} discarded"
        )
        # None discarded: every fire of either beat was executed (run, or skipped: its slot ran).
        assert sum(executed.values()) == sum(fired.values())
        assert min(fired.values()) >= RUN_FOR_SECONDS // INTERVAL - 2
        # On schedule: about one run per interval, one per slot, the slot on the database's clock.
        # (a slot boundary between two fires can put both in one slot: one run less, never two)
        assert len(slots) >= max(fired.values()) - 2
        assert len(set(slots)) == len(slots) <= max(fired.values()) + 1
        for run in job_runs:
            assert int(run.slot) == int(run.started_at.timestamp() // INTERVAL)
    assert discarded == 0
