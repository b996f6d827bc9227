"""A broker path that silently drops every packet for a while, then carries them again.

The worker reaches Redis (broker and result backend) through a loopback proxy that, while
blackholed, keeps the TCP connections open and forwards nothing: no reset, no FIN, no error, the
half-open connection of a failover, a NAT or firewall timeout (celery#8030, #10502). Nothing is
restarted; the property is that the worker consumes again within 60 s of the path returning.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from focus_app.models import UserFocusProfile
from tests.faults.harness import BlackholeProxy, figure, wait_for
from tests.integration.factories import make_session, make_user

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BLACKHOLE_SECONDS = 40
RESUMES_WITHIN_SECONDS = 60


@pytest.fixture
def proxy(faults) -> Iterator[BlackholeProxy]:
    proxy = BlackholeProxy(faults.redis.port)
    try:
        yield proxy
    finally:
        proxy.close()


def _profile_for(faults, user: str) -> None:
    """A user with sessions, and the task that computes their profile published (directly to Redis)."""
    db = faults.db()
    make_user(db, user)
    for day in range(3):
        make_session(db, user, datetime.now(UTC) - timedelta(days=day + 1), 25)
    faults.send("focus.update_profiles", user_ids=[user])


def _profiled(faults, user: str) -> bool:
    db = faults.db()
    db.rollback()
    return db.scalar(select(UserFocusProfile.user_id).where(UserFocusProfile.user_id == user)) == user


def test_worker_resumes_after_a_half_open_broker_path(faults, proxy):
    worker = faults.worker(
        "half-open", "profiles", CELERY_BROKER_URL=proxy.url(), CELERY_RESULT_BACKEND=proxy.url()
    )
    wait_for(lambda: "ready." in worker.output(), 60, what="worker ready")
    _profile_for(faults, "before")
    wait_for(lambda: _profiled(faults, "before"), 30, what="consuming through the proxy")

    proxy.blackhole()
    time.sleep(BLACKHOLE_SECONDS)
    proxy.restore()
    restored_at = time.monotonic()
    _profile_for(faults, "after")
    wait_for(
        lambda: _profiled(faults, "after"), RESUMES_WITHIN_SECONDS + 30, interval=0.5, what="consuming again"
    )
    resumed_in = time.monotonic() - restored_at
    figure(f"half-open broker path ({BLACKHOLE_SECONDS} s silent): task done after it returned", resumed_in)
    output = worker.output()
    assert worker.alive(), output[-3000:]
    assert resumed_in < RESUMES_WITHIN_SECONDS, output[-5000:]
