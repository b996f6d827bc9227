"""Weeks of the weekly intelligence (seed 004): which ISO week just ended, its slot, whether a
beat tick falls in the Monday 02:00 window, and which weeks may have a brief."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from focus_app.services.jobkit.errors import InvalidInput

BEAT_HOUR = 2  # Monday 02:00 in the configured timezone
# A brief looks weeks back from its week: far older dates overflow Python's date range there.
EARLIEST_WEEK_OF = date(1970, 1, 5)


def week_just_ended(now: datetime, timezone: str) -> date:
    """Monday of the last ISO week that has fully ended at `now` in `timezone`."""
    local = now.astimezone(ZoneInfo(timezone)).date()
    return local - timedelta(days=local.weekday() + 7)


def week_slot(week_of: date) -> str:
    year, week, _ = week_of.isocalendar()
    return f"{year}-W{week:02d}"


def beat_window_open(now: datetime, timezone: str, grace_seconds: int) -> bool:
    """True from Monday 02:00 until the grace period ends: a late beat still runs, once."""
    local = now.astimezone(ZoneInfo(timezone))
    monday = local.date() - timedelta(days=local.weekday())
    opens = datetime.combine(monday, time(BEAT_HOUR), tzinfo=local.tzinfo)
    return opens <= local < opens + timedelta(seconds=grace_seconds)


def week_of_problem(week_of: date, latest: date) -> str | None:
    """Why `week_of` cannot have a brief (None when it can)."""
    if week_of.isoweekday() != 1:
        return "must be a Monday (the first day of an ISO week)"
    if week_of > latest:
        return f"must be a week that has ended (latest {latest.isoformat()})"
    if week_of < EARLIEST_WEEK_OF:
        return f"must be on or after {EARLIEST_WEEK_OF.isoformat()}"
    return None


@lru_cache(maxsize=1024)
def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_week_of(raw: str, latest: date) -> date:
    """A week_of from a request path, or InvalidInput naming the field."""
    try:
        week_of = date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            "invalid week_of", {"path": {"week_of": ["Not a valid date (YYYY-MM-DD)."]}}
        ) from None
    problem = week_of_problem(week_of, latest)
    if problem:
        raise InvalidInput("invalid week_of", {"path": {"week_of": [problem]}})
    return week_of
