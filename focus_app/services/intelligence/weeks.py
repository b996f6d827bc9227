"""Weeks of the weekly intelligence (seed 004) and when each user's brief comes due.

A user's brief for an ISO week comes due at the next Monday 02:00 in the user's own timezone: two
hours after their week ended, a margin for clocks that disagree. Everything here is arithmetic on
a clock given as data, so the schedule can be driven by a simulated clock over every zone
(tests/unit/test_weekly_schedule.py) and the tick uses exactly the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from focus_app.services.jobkit.errors import InvalidInput

WEEK = timedelta(days=7)
DUE_TIME = time(2)  # Monday 02:00, local
EASTERNMOST = "Etc/GMT-14"  # UTC+14 (Pacific/Kiritimati): where a week ends first
UNKNOWN_ZONE_FALLBACK = "UTC"
# A brief looks weeks back from its week: far older dates overflow Python's date range there.
EARLIEST_WEEK_OF = date(1970, 1, 5)


@lru_cache(maxsize=1024)
def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=2048)
def zone_of(name: str | None) -> ZoneInfo:
    """A user's zone; one this server does not know (a stored name tzdata dropped, a row written
    by hand) is scheduled in UTC, and its brief then fails with the reason. Cached: ZoneInfo's own
    cache keeps only a few zones loaded, and a tick meets hundreds."""
    return ZoneInfo(name if name and known_zone(name) else UNKNOWN_ZONE_FALLBACK)


def due_at(week_of: date, zone: ZoneInfo) -> datetime:
    """When the brief of the week starting `week_of` comes due: the following Monday 02:00 in
    `zone`, in UTC. A Monday 02:00 that a clock change skips is the moment the clocks jump; one
    that happens twice is the first."""
    return datetime.combine(week_of + WEEK, DUE_TIME, tzinfo=zone).astimezone(UTC)


def due_week(now: datetime, zone: ZoneInfo) -> date:
    """Monday of the latest week whose brief is due at `now` in `zone`."""
    local = now.astimezone(zone)
    ended = local.date() - timedelta(days=local.weekday()) - WEEK
    return ended if due_at(ended, zone) <= now else ended - WEEK


@dataclass(frozen=True)
class Schedule:
    """What a tick does for one user: the weeks to write now, the latest week planned so far, and
    when the next week comes due (the tick looks at the user again then)."""

    weeks: tuple[date, ...]
    brief_week: date | None
    next_due_at: datetime


def schedule(
    now: datetime,
    zone: ZoneInfo,
    *,
    created_at: datetime,
    brief_week: date | None,
    enabled: bool,
    catch_up_weeks: int,
) -> Schedule:
    """Every week after `brief_week` that has come due in `zone`, ended after the user signed up,
    and lies within the last `catch_up_weeks` due weeks: a tick that comes late, or after days
    without ticks, writes every week missed. A disabled user gets nothing and keeps `brief_week`,
    so turning briefs back on brings the weeks still inside the catch-up window."""
    latest = due_week(now, zone)
    next_due_at = due_at(latest + WEEK, zone)
    if not enabled:
        return Schedule((), brief_week, next_due_at)
    first = max(latest - (catch_up_weeks - 1) * WEEK, due_week(created_at, zone) + WEEK)
    if brief_week is not None:
        first = max(first, brief_week + WEEK)
    owed = tuple(first + n * WEEK for n in range((latest - first).days // 7 + 1)) if first <= latest else ()
    return Schedule(owed, owed[-1] if owed else brief_week, next_due_at)


def week_just_ended(now: datetime, timezone: str) -> date:
    """Monday of the last ISO week that has fully ended at `now` in `timezone`."""
    local = now.astimezone(ZoneInfo(timezone)).date()
    return local - timedelta(days=local.weekday() + 7)


def latest_ended_week(now: datetime) -> date:
    """The latest week that has ended anywhere on Earth: the newest week a brief can exist for."""
    return week_just_ended(now, EASTERNMOST)


def week_slot(week_of: date) -> str:
    year, week, _ = week_of.isocalendar()
    return f"{year}-W{week:02d}"


def week_of_problem(week_of: date, latest: date) -> str | None:
    """Why `week_of` cannot have a brief (None when it can)."""
    if week_of.isoweekday() != 1:
        return "must be a Monday (the first day of an ISO week)"
    if week_of > latest:
        return f"must be a week that has ended (latest {latest.isoformat()})"
    if week_of < EARLIEST_WEEK_OF:
        return f"must be on or after {EARLIEST_WEEK_OF.isoformat()}"
    return None


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
