"""The one place the periodic schedule is declared (`celery -A workers beat`), and how an
entry's schedule reads in words and when it fires next (the operator page shows both)."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab, schedule
from celery.utils.time import remaining

from focus_app.config import Settings
from focus_app.services.ops.periodic import Periodic

# Every user's brief comes due at Monday 02:00 in their own timezone, which falls on a quarter
# hour of UTC in every zone in use (offsets are whole quarter hours); a tick on every fifth minute
# reaches it within seconds, and a late or missed tick is caught up by the next one.
INTELLIGENCE_TICK_MINUTES = 5


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """No entry has an `expires`: Celery computes it on beat's clock and the worker checks it on its
    own, so a beat host minutes behind had every fire discarded. A fire that repeats or outlives
    its slot (two beats, a backlog after an outage) is skipped by the task's slot instead, on the
    database's clock, and the sweepers without runs are idempotent."""
    profile_interval = settings.profile_update_interval_seconds
    retry_interval = settings.intelligence_retry_interval_seconds
    maintenance_interval = settings.profile_maintenance_interval_minutes * 60
    return {
        "focus-update-profiles": {
            "task": "focus.update_profiles",
            "schedule": timedelta(seconds=profile_interval),
            "kwargs": {"trigger": "beat"},
        },
        # A tick, not a weekly slot: each tick plans the briefs that came due since the last one.
        "intelligence-weekly": {
            "task": "intelligence.weekly",
            "schedule": crontab(minute=f"*/{INTELLIGENCE_TICK_MINUTES}"),
            "kwargs": {"trigger": "beat"},
        },
        "intelligence-retry-failed": {
            "task": "intelligence.retry_failed",
            "schedule": timedelta(seconds=retry_interval),
            "kwargs": {"trigger": "beat"},
        },
        "analysis-requeue-stale": {
            "task": "analysis.requeue_stale",
            "schedule": timedelta(seconds=settings.analysis_sweep_interval_seconds),
            "kwargs": {"trigger": "beat"},
        },
        "ops-archive-failed-analysis-jobs": {
            "task": "ops.archive_failed_analysis_jobs",
            "schedule": crontab(hour=3, minute=30),
            "kwargs": {"trigger": "beat"},
        },
        # Run units whose message is gone (Redis restarted or flushed, a worker killed) go out again.
        "ops-republish-lost-units": {
            "task": "ops.republish_lost_units",
            "schedule": timedelta(seconds=settings.unit_sweep_interval_seconds),
            "kwargs": {"trigger": "beat"},
        },
        "maintenance-consolidate-profiles": {
            "task": "maintenance.consolidate_profiles",
            "schedule": timedelta(seconds=maintenance_interval),
            "kwargs": {"trigger": "beat"},
        },
    }


def periodic_entries(settings: Settings) -> list[Periodic]:
    """The schedule as data for the operator page: words, interval, and Celery's own next-run
    arithmetic for each entry."""
    timezone = settings.timezone
    entries = []
    for name, entry in build_beat_schedule(settings).items():
        declared = entry["schedule"]
        interval = int(declared.total_seconds()) if isinstance(declared, timedelta) else None
        entries.append(
            Periodic(
                entry=name,
                task=entry["task"],
                words=describe_schedule(declared, timezone),
                interval_seconds=interval,
                next_run=functools.partial(next_run_at, declared, timezone=timezone),
            )
        )
    return entries


DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # crontab numbers Sunday 0


def describe_schedule(entry_schedule: timedelta | crontab, timezone: str) -> str:
    """`every 5 minutes`, `daily at 03:30 (UTC)`, `Mon every 10 minutes 02:00–02:50 (UTC)`."""
    if isinstance(entry_schedule, timedelta):
        return _every(int(entry_schedule.total_seconds()))
    cron: Any = entry_schedule  # celery-types does not declare crontab's fields
    if cron._orig_day_of_month != "*" or cron._orig_month_of_year != "*":
        return f"cron {cron._orig_minute} {cron._orig_hour} {cron._orig_day_of_month} " + (
            f"{cron._orig_month_of_year} {cron._orig_day_of_week} ({timezone})"
        )
    days = sorted(cron.day_of_week)
    times = _times(sorted(cron.hour), sorted(cron.minute))
    if len(days) == 7:
        return f"{'' if times.startswith(('hourly', 'every')) else 'daily '}{times} ({timezone})"
    return f"{', '.join(DAY_NAMES[d] for d in days)} {times} ({timezone})"


def _every(seconds: int) -> str:
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"every {unit}" if count == 1 else f"every {count} {unit}s"
    return f"every {seconds} seconds"


def _times(hours: list[int], minutes: list[int]) -> str:
    slots = [(h, m) for h in hours for m in minutes]
    if len(slots) <= 4:
        return "at " + ", ".join(f"{h:02d}:{m:02d}" for h, m in slots)
    steps = {b - a for a, b in zip(minutes, minutes[1:], strict=False)}
    contiguous = hours == list(range(hours[0], hours[-1] + 1))
    if len(minutes) == 1 and contiguous:
        during = (
            "" if len(hours) == 24 else f" {hours[0]:02d}:{minutes[0]:02d}–{hours[-1]:02d}:{minutes[0]:02d}"
        )
        return f"hourly at :{minutes[0]:02d}{during}"
    if len(steps) == 1 and contiguous and minutes[0] + 60 - minutes[-1] in steps:
        every = _every(steps.pop() * 60)
        if len(hours) == 24 and minutes[0] == 0:
            return every
        first, last = slots[0], slots[-1]
        return f"{every} {first[0]:02d}:{first[1]:02d}–{last[0]:02d}:{last[1]:02d}"
    return f"at minutes {','.join(map(str, minutes))} of hours {','.join(map(str, hours))}"


def next_run_at(
    entry_schedule: timedelta | crontab, last_run_at: datetime | None, now: datetime, timezone: str
) -> tuple[datetime, bool]:
    """When beat fires the entry next, by Celery's own schedule arithmetic: (time, due now).

    An interval counts from the entry's last run (beat keeps its own clock; the caller passes the
    last run it knows of); a past or unknown last run means beat fires it at its next tick. A
    crontab fires at its next slot after `now` in the app's timezone, whatever ran before.
    """
    if isinstance(entry_schedule, timedelta):
        if last_run_at is None:
            return now, True
        interval = schedule(run_every=entry_schedule, nowfun=lambda: now)
        left = interval.remaining_estimate(last_run_at)
        return (now + left, False) if left > timedelta(0) else (now, True)
    declared: Any = entry_schedule  # celery-types does not declare crontab's fields
    cron = crontab(
        minute=declared._orig_minute,
        hour=declared._orig_hour,
        day_of_week=declared._orig_day_of_week,
        day_of_month=declared._orig_day_of_month,
        month_of_year=declared._orig_month_of_year,
        nowfun=lambda: now,
    )
    left = remaining(*cron.remaining_delta(now, tz=ZoneInfo(timezone)))
    return now + left, False
