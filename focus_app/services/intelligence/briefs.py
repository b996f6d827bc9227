"""The weekly brief built from numbers (seed 004): stats, story, insights, patterns, velocity.

Pure functions over the aggregates one set-based query returns per user, so every message and
threshold is unit-tested without a database. Hours and days are the user's local ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_NAMES = dict(
    zip(DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True)
)
TREND_WEEKS = 4
PEAKS = 3
MORE_FOCUS_PCT = 10
LESS_FOCUS_PCT = -25
GOOD_COMPLETION = 0.8
LOW_COMPLETION = 0.5
HIGH_SCORE = 4.0
LOW_SCORE = 2.0
MANY_INTERRUPTIONS_PER_SESSION = 2.0
TREND_SLOPE_SHARE = 0.1  # slope per week as a share of the 4-week mean that counts as a trend


@dataclass(frozen=True)
class WeekTotals:
    sessions: int = 0
    minutes: int = 0
    completed: int = 0
    score_sum: int = 0
    scored: int = 0
    interruptions: int = 0


@dataclass(frozen=True)
class WeekNumbers:
    """One user's aggregates: weeks[0] is the brief's week, weeks[1] the one before, ..."""

    week_of: date
    weeks: dict[int, WeekTotals] = field(default_factory=dict)
    by_day: dict[int, tuple[int, int]] = field(default_factory=dict)  # ISO weekday -> (sessions, minutes)
    by_hour: dict[int, tuple[int, int]] = field(default_factory=dict)  # local hour -> (sessions, minutes)
    profile_peak_hours: list[int] | None = None
    profile_peak_days: list[str] | None = None

    def week(self, back: int) -> WeekTotals:
        return self.weeks.get(back, WeekTotals())


def build_brief(numbers: WeekNumbers) -> dict[str, Any]:
    """Every section of the brief; main_story is the deterministic text."""
    stats = week_stats(numbers)
    patterns = week_patterns(numbers)
    velocity = week_velocity(numbers)
    return {
        "week_stats": stats,
        "patterns": patterns,
        "velocity": velocity,
        "insights": week_insights(stats, patterns, velocity),
        "main_story": main_story(stats, patterns, velocity),
    }


def week_stats(numbers: WeekNumbers) -> dict[str, Any]:
    week = numbers.week(0)
    return {
        "week_of": numbers.week_of.isoformat(),
        "focus_minutes": week.minutes,
        "sessions": week.sessions,
        "completed": week.completed,
        "completion_rate": round(week.completed / week.sessions, 2) if week.sessions else None,
        "avg_focus_score": round(week.score_sum / week.scored, 2) if week.scored else None,
        "interruptions": week.interruptions,
        "by_day": {
            day: {
                "sessions": numbers.by_day.get(n, (0, 0))[0],
                "minutes": numbers.by_day.get(n, (0, 0))[1],
            }
            for n, day in enumerate(DAYS, start=1)
        },
    }


def _top(counts: dict[Any, tuple[int, int]]) -> list[Any]:
    """Top 3 by sessions, ties by minutes, then the earlier hour/day (as the profile job does)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
    return [key for key, _ in ranked[:PEAKS]]


def week_patterns(numbers: WeekNumbers) -> dict[str, Any]:
    peak_hours = _top(numbers.by_hour)
    peak_days = [DAYS[n - 1] for n in _top(numbers.by_day)]
    usual_hours = list(numbers.profile_peak_hours or [])
    usual_days = list(numbers.profile_peak_days or [])
    return {
        "peak_hours": peak_hours,
        "peak_days": peak_days,
        "usual_peak_hours": usual_hours,
        "usual_peak_days": usual_days,
        "hours_in_usual_peak": [hour for hour in peak_hours if hour in usual_hours],
        "new_peak_hours": [hour for hour in peak_hours if usual_hours and hour not in usual_hours],
        "best_day": peak_days[0] if peak_days else None,
        "has_profile": bool(usual_hours),
    }


def week_velocity(numbers: WeekNumbers) -> dict[str, Any]:
    this, previous = numbers.week(0), numbers.week(1)
    trend = [
        {
            "week_of": (numbers.week_of - timedelta(weeks=back)).isoformat(),
            "focus_minutes": numbers.week(back).minutes,
            "sessions": numbers.week(back).sessions,
        }
        for back in range(TREND_WEEKS - 1, -1, -1)
    ]
    return {
        "focus_minutes_change_pct": _change_pct(this.minutes, previous.minutes),
        "sessions_change_pct": _change_pct(this.sessions, previous.sessions),
        "previous_week_minutes": previous.minutes,
        "trend": trend,
        "trend_direction": trend_direction(
            [numbers.week(back).minutes for back in range(TREND_WEEKS - 1, -1, -1)]
        ),
    }


def _change_pct(current: int, previous: int) -> int | None:
    """None when there is nothing to compare with (a change from zero has no percentage)."""
    if previous == 0:
        return None
    return round((current - previous) * 100 / previous)


def trend_direction(minutes: list[int]) -> str:
    """Least-squares slope over the weeks, judged against their mean."""
    mean = sum(minutes) / len(minutes)
    if mean == 0:
        return "no_activity"
    xs = range(len(minutes))
    x_mean = sum(xs) / len(minutes)
    slope = sum((x - x_mean) * (y - mean) for x, y in zip(xs, minutes, strict=True)) / sum(
        (x - x_mean) ** 2 for x in xs
    )
    if slope > TREND_SLOPE_SHARE * mean:
        return "rising"
    if slope < -TREND_SLOPE_SHARE * mean:
        return "falling"
    return "steady"


def week_insights(stats: dict[str, Any], patterns: dict[str, Any], velocity: dict[str, Any]) -> list[dict]:
    insights: list[dict[str, str]] = []

    def add(kind: str, metric: str, message: str) -> None:
        insights.append({"type": kind, "metric": metric, "message": message})

    sessions = stats["sessions"]
    if sessions == 0:
        previous = velocity["previous_week_minutes"]
        add(
            "neutral",
            "activity",
            "No focus sessions this week."
            + (f" The week before you focused {_duration(previous)}." if previous else "")
            + " One short session is enough to get going again.",
        )
        return insights

    change = velocity["focus_minutes_change_pct"]
    if change is None:
        add("neutral", "focus_time", f"You focused {_duration(stats['focus_minutes'])} this week.")
    elif change >= MORE_FOCUS_PCT:
        add("positive", "focus_time", f"You focused {change}% more than the week before.")
    elif change <= LESS_FOCUS_PCT:
        add(
            "suggestion",
            "focus_time",
            f"You focused {-change}% less than the week before. Blocking one fixed slot a day may help.",
        )
    else:
        add("neutral", "focus_time", "Your focus time held close to the week before.")

    rate = stats["completion_rate"]
    if rate >= GOOD_COMPLETION:
        add("positive", "completion", f"You completed {round(rate * 100)}% of your sessions.")
    elif rate < LOW_COMPLETION:
        add(
            "suggestion",
            "completion",
            f"You completed {round(rate * 100)}% of your sessions. Shorter sessions are easier to finish.",
        )

    score = stats["avg_focus_score"]
    if score is not None and score >= HIGH_SCORE:
        add("positive", "focus_score", f"Your sessions averaged {score:g}/5. Keep up the great work!")
    elif score is not None and score <= LOW_SCORE:
        add("suggestion", "focus_score", f"Your sessions averaged {score:g}/5. Note what got in the way.")

    per_session = stats["interruptions"] / sessions
    if stats["interruptions"] == 0:
        add("positive", "interruptions", "No interruptions all week.")
    elif per_session > MANY_INTERRUPTIONS_PER_SESSION:
        add(
            "suggestion",
            "interruptions",
            f"{per_session:.1f} interruptions per session. Silencing notifications may help.",
        )

    if patterns["hours_in_usual_peak"]:
        add("positive", "peak_hours", "You did your best work in your usual peak hours.")
    elif patterns["new_peak_hours"]:
        hours = ", ".join(f"{hour}:00" for hour in patterns["new_peak_hours"])
        add("neutral", "peak_hours", f"Your focus shifted this week: most sessions started around {hours}.")

    if velocity["trend_direction"] == "rising":
        add("positive", "trend", "Your focus time has been rising over the last four weeks.")
    elif velocity["trend_direction"] == "falling":
        add("suggestion", "trend", "Your focus time has been falling over the last four weeks.")
    return insights


def main_story(stats: dict[str, Any], patterns: dict[str, Any], velocity: dict[str, Any]) -> str:
    week = date.fromisoformat(stats["week_of"])
    label = f"{week.strftime('%B')} {week.day}, {week.year}"
    if stats["sessions"] == 0:
        previous = velocity["previous_week_minutes"]
        story = f"No focus sessions were recorded in the week of {label}."
        if previous:
            story += f" The week before, you focused for {_duration(previous)}."
        return story + " There is nothing to analyse yet; your next brief picks up from your next session."

    parts = [
        f"In the week of {label} you focused for {_duration(stats['focus_minutes'])} across "
        f"{_plural(stats['sessions'], 'session')} and completed {stats['completed']} of them "
        f"({round(stats['completion_rate'] * 100)}%)."
    ]
    score = stats["avg_focus_score"]
    interruptions = _plural(stats["interruptions"], "interruption")
    if score is not None:
        parts.append(f"Your average focus score was {score:g}/5, with {interruptions}.")
    else:
        parts.append(f"You logged {interruptions}.")
    if patterns["best_day"]:
        parts.append(
            f"Your strongest day was {DAY_NAMES[patterns['best_day']]}, and you most often started "
            f"around {patterns['peak_hours'][0]}:00."
        )
    change = velocity["focus_minutes_change_pct"]
    if change is not None:
        direction = "more" if change >= 0 else "less"
        parts.append(f"That is {abs(change)}% {direction} focus time than the week before.")
    if velocity["trend_direction"] in ("rising", "falling", "steady"):
        parts.append(f"Over four weeks your focus time is {velocity['trend_direction']}.")
    return " ".join(parts)


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
