"""A Redis that is up but refuses writes, under a running worker and beat.

Each fault is produced on the test's own Redis: `NOREPLICAS` (`min-replicas-to-write 1` with no
replica), `OOM` (`maxmemory 1` under noeviction) and `MISCONF` (a snapshot that cannot be written,
with stop-writes-on-bgsave-error). Through all three the same worker and beat processes live on
(the worker used to exit with "Unrecoverable error: ResponseError"), `/ready` answers 503 naming
Redis's error, and after each the worker consumes by itself what is published.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select

from focus_app.models import JobRun, UserFocusProfile
from tests.faults.harness import figure, wait_for
from tests.integration.factories import make_session, make_user

pytestmark = [pytest.mark.faults, pytest.mark.slow]

HOLD_SECONDS = 6
RECOVERY_BOUND_SECONDS = 30  # the worker's check backs off to 10 s at most; the rest is the work


def _refusal(client: redis.Redis) -> str | None:
    try:
        client.set("test:probe", "1", ex=5)
    except redis.ResponseError as exc:
        return str(exc)
    return None


def _bgsave(client: redis.Redis) -> None:
    """Start a snapshot, once the one in progress (if any) has finished."""

    def started() -> bool:
        try:
            client.bgsave()
        except redis.ResponseError as exc:
            if "in progress" in str(exc):
                return False
            raise
        return True

    wait_for(started, 10, what="a snapshot started")


def _faults(client: redis.Redis) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    data_dir = client.config_get("dir")["dir"]

    def misconf_on() -> None:
        client.config_set("dir", "/proc")  # not writable, not even for root
        _bgsave(client)

    def misconf_off() -> None:
        client.config_set("dir", data_dir)
        _bgsave(client)

    return [
        (
            "NOREPLICAS",
            lambda: client.config_set("min-replicas-to-write", 1),
            lambda: client.config_set("min-replicas-to-write", 0),
        ),
        ("OOM", lambda: client.config_set("maxmemory", 1), lambda: client.config_set("maxmemory", 0)),
        ("MISCONF", misconf_on, misconf_off),
    ]


def test_worker_and_beat_outlive_a_redis_that_refuses_writes(faults):
    worker = faults.worker("refused", "profiles", PROFILE_UPDATE_INTERVAL_SECONDS="2")
    beat = faults.beat("beat-refused", PROFILE_UPDATE_INTERVAL_SECONDS="2")
    wait_for(lambda: "ready." in worker.output(), 60, what="worker ready")
    worker_pid, beat_pid = worker.process.pid, beat.process.pid
    client = faults.app.test_client()
    admin = faults.redis_client
    recovered_in: dict[str, float] = {}

    for fault, start, end in _faults(admin):
        start()
        wait_for(lambda: _refusal(admin), 10, what=f"{fault}: Redis refuses writes")
        ready = client.get("/api/v1/ready")
        assert ready.status_code == 503, ready.json
        assert ready.json["checks"]["redis"] == "refuses_writes"
        assert fault in ready.json["reasons"]["redis"] or (
            fault == "OOM" and "maxmemory" in ready.json["reasons"]["redis"]
        ), ready.json
        time.sleep(HOLD_SECONDS)
        assert worker.alive() and beat.alive(), f"{fault}: {worker.output()[-3000:]}"

        end()
        wait_for(lambda: _refusal(admin) is None, 10, what=f"{fault}: Redis takes writes again")
        ended_at = time.monotonic()
        # Work that exists only after the fault: nothing done before it can pass for it.
        db = faults.db()
        make_user(db, f"after-{fault}")
        for day in range(3):
            make_session(db, f"after-{fault}", datetime.now(UTC) - timedelta(days=day + 1), 25)
        faults.send("focus.update_profiles", user_ids=[f"after-{fault}"])

        def profiled(user: str = f"after-{fault}") -> bool:
            db = faults.db()
            db.rollback()
            return db.scalar(select(UserFocusProfile.user_id).where(UserFocusProfile.user_id == user)) == user

        wait_for(profiled, 60, interval=0.2, what=f"{fault}: a task published after it consumed")
        recovered_in[fault] = time.monotonic() - ended_at
        figure(
            f"redis refusing writes ({fault}, {HOLD_SECONDS} s): task done after it ended",
            recovered_in[fault],
        )
        assert client.get("/api/v1/ready").status_code == 200

    # Beat published again after the last fault: a periodic run that started after it.
    last_end = datetime.now(UTC) - timedelta(seconds=recovered_in["MISCONF"])

    def beat_ran() -> int:
        db = faults.db()
        db.rollback()
        return db.scalar(
            select(func.count())
            .select_from(JobRun)
            .where(JobRun.trigger == "beat", JobRun.started_at > last_end)
        )

    wait_for(beat_ran, 20, interval=0.5, what="a beat run after the faults")
    output = worker.output()
    print(
        f"FAULTS redis refusing writes: worker pid {worker_pid} kept, recovered in "
        + ", ".join(f"{fault} {seconds:.1f} s" for fault, seconds in recovered_in.items())
        + f"; worker logged 'Redis refuses writes' {output.count('Redis refuses writes')} times"
    )
    assert worker.process.pid == worker_pid and beat.process.pid == beat_pid
    assert worker.alive() and beat.alive()
    assert "Unrecoverable error" not in output
    # Logged once per episode, not once per check (OOM lets BRPOP through: the worker may not notice).
    assert 2 <= output.count("Redis refuses writes") <= 3, output
    assert output.count("Redis accepts writes again") == output.count("Redis refuses writes")
    # kombu's own warning, each second while OOM refuses its binding refresh, once a minute at most.
    assert output.count("maybe_refresh_binding_expiry: Redis error") <= 3, output
    assert max(recovered_in.values()) < RECOVERY_BOUND_SECONDS, recovered_in
