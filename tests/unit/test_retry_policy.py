"""The one retry policy of every task family (workers/base.py): it outlasts a 5-minute PostgreSQL
outage, and no wait is longer than a minute, so work resumes within a minute of the outage ending."""

from __future__ import annotations

import random

from workers.base import BACKOFF_MAX_SECONDS, MAX_RETRIES, retry_countdown


def test_every_wait_is_capped_at_a_minute_and_grows_exponentially():
    random.seed(12)
    for retries in range(MAX_RETRIES):
        ceiling = min(BACKOFF_MAX_SECONDS, 2**retries)
        waits = [retry_countdown(retries) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling <= 60 for wait in waits)


def test_the_retries_outlast_a_five_minute_outage_even_with_the_shortest_waits():
    shortest = sum(min(BACKOFF_MAX_SECONDS, 2**retries) / 2 for retries in range(MAX_RETRIES))
    assert shortest > 300
