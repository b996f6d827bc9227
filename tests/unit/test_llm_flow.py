"""The flow control's pure parts: a provider's Retry-After, the most a call can cost, the budget day."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime

import pytest

from focus_app.services.jobkit.llm import DEFAULT_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, retry_after_seconds
from focus_app.services.jobkit.llm_flow import FRAMING_TOKENS, budget_day, most_tokens


@pytest.mark.parametrize(
    "headers,seconds",
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # OpenAI's finer header wins
        ({}, DEFAULT_BACKOFF_SECONDS),
        ({"retry-after": "soon"}, DEFAULT_BACKOFF_SECONDS),
        ({"retry-after": "nan"}, DEFAULT_BACKOFF_SECONDS),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "86400"}, MAX_BACKOFF_SECONDS),
    ],
)
def test_retry_after_in_seconds(headers, seconds):
    assert retry_after_seconds(headers) == seconds


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= retry_after_seconds({"retry-after": when}) <= 30


def test_the_most_a_call_can_cost_counts_bytes_framing_and_the_whole_answer():
    assert most_tokens("sys", "héllo", 100) == 3 + 6 + FRAMING_TOKENS + 100


def test_a_budget_day_is_the_utc_day_and_the_next_starts_at_midnight():
    day, next_day = budget_day(datetime.fromisoformat("2026-03-08T23:30:00-05:00"))
    assert (day.isoformat(), next_day) == ("2026-03-09", datetime(2026, 3, 10, tzinfo=UTC))
