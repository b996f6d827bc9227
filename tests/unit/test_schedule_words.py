"""The beat schedule in words and its next run (Celery's own schedule arithmetic), for the
operator page: intervals from the last run, crontabs in the app's timezone across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab

from beat_schedule import build_beat_schedule, describe_schedule, next_run_at
from tests.conftest import make_settings

WEEKLY = crontab(minute="*/10", hour="2", day_of_week="mon")
ARCHIVE = crontab(hour=3, minute=30)


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        (timedelta(seconds=300), "every 5 minutes"),
        (timedelta(seconds=60), "every minute"),
        (timedelta(seconds=90), "every 90 seconds"),
        (timedelta(hours=2), "every 2 hours"),
        (WEEKLY, "Mon every 10 minutes 02:00–02:50 (Europe/Berlin)"),
        (ARCHIVE, "daily at 03:30 (Europe/Berlin)"),
        (crontab(minute=0, hour="*"), "hourly at :00 (Europe/Berlin)"),
        (crontab(minute="*/5"), "every 5 minutes (Europe/Berlin)"),
        (
            crontab(minute=15, hour="8-17", day_of_week="mon-fri"),
            "Mon, Tue, Wed, Thu, Fri hourly at :15 08:15–17:15 (Europe/Berlin)",
        ),
        (crontab(minute="0,30", hour="1,2"), "daily at 01:00, 01:30, 02:00, 02:30 (Europe/Berlin)"),
        (crontab(minute=0, hour=0, day_of_month=1), "cron 0 0 1 * * (Europe/Berlin)"),
    ],
)
def test_schedules_read_in_words(schedule, words):
    assert describe_schedule(schedule, "Europe/Berlin") == words


def test_every_entry_of_the_beat_schedule_has_words():
    schedule = build_beat_schedule(make_settings("postgresql://x/y", "redis://x"))
    assert all(describe_schedule(entry["schedule"], "UTC") for entry in schedule.values())


def test_an_interval_fires_one_interval_after_its_last_run():
    now = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)

    assert next_run_at(timedelta(minutes=5), now - timedelta(minutes=2), now, "UTC") == (
        now + timedelta(minutes=3),
        False,
    )
    # Overdue, or never run: beat fires it at its next tick.
    assert next_run_at(timedelta(minutes=5), now - timedelta(hours=1), now, "UTC") == (now, True)
    assert next_run_at(timedelta(minutes=5), None, now, "UTC") == (now, True)


def test_a_crontab_fires_at_its_next_slot_in_the_apps_timezone_across_dst():
    # New York moves to EDT (UTC-4) on Sunday 2026-03-08; Saturday noon UTC is 07:00 EST.
    saturday = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)

    assert next_run_at(ARCHIVE, None, saturday, "America/New_York") == (
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # 03:30 EDT, the first slot after the change
        False,
    )
    assert next_run_at(WEEKLY, None, saturday, "America/New_York")[0] == datetime(
        2026, 3, 9, 6, 0, tzinfo=UTC
    )
    # Inside Monday's window the next tick is ten minutes on; after it, next week.
    monday = datetime(2026, 3, 9, 6, 5, tzinfo=UTC)  # 02:05 EDT
    assert next_run_at(WEEKLY, None, monday, "America/New_York")[0] == datetime(2026, 3, 9, 6, 10, tzinfo=UTC)
    late = datetime(2026, 3, 9, 6, 55, tzinfo=UTC)  # 02:55 EDT
    assert next_run_at(WEEKLY, None, late, "America/New_York")[0] == datetime(2026, 3, 16, 6, 0, tzinfo=UTC)
    # The last run does not matter for a crontab: the same slot, in UTC this time.
    assert next_run_at(ARCHIVE, saturday - timedelta(days=9), saturday, "UTC")[0] == datetime(
        2026, 3, 8, 3, 30, tzinfo=UTC
    )
