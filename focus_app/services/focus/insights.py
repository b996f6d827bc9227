"""Per-session feedback against the user's own averages (seed 001 `get_session_insights`).

Pure functions over numbers, so every message and threshold is unit-tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass

LONGER_THAN_USUAL_PCT = 10
SHORTER_THAN_USUAL_PCT = 25
HIGH_SCORE = 4
LOW_SCORE = 2
OVERRUN_PCT = 10


@dataclass(frozen=True)
class SessionFacts:
    duration_minutes: int
    expected_duration: int | None
    interruption_count: int
    focus_score: int | None
    was_completed: bool
    local_hour: int


@dataclass(frozen=True)
class UserAverages:
    """Averages over the user's other ended sessions."""

    sessions: int
    duration_minutes: float | None
    interruptions: float | None
    focus_score: float | None


def build_session_insights(
    facts: SessionFacts, averages: UserAverages, peak_hours: list[int]
) -> list[dict[str, str]]:
    insights: list[dict[str, str]] = []

    def add(kind: str, metric: str, message: str) -> None:
        insights.append({"type": kind, "metric": metric, "message": message})

    minutes = facts.duration_minutes
    if averages.sessions == 0 or not averages.duration_minutes:
        add(
            "neutral",
            "duration",
            f"You focused {minutes}min. Comparisons with your averages start after your next session.",
        )
    else:
        average = averages.duration_minutes
        change = round((minutes - average) / average * 100)
        if change >= LONGER_THAN_USUAL_PCT:
            add(
                "positive",
                "duration",
                f"Great job! You focused {minutes}min, {change}% longer than your average.",
            )
        elif change <= -SHORTER_THAN_USUAL_PCT:
            add(
                "suggestion",
                "duration",
                f"This session was {-change}% shorter than your average of {round(average)}min. "
                "A quieter slot may help you settle in.",
            )
        else:
            add(
                "neutral",
                "duration",
                f"You focused {minutes}min, close to your average of {round(average)}min.",
            )

    interruptions = "interruption" if facts.interruption_count == 1 else "interruptions"
    if facts.interruption_count == 0:
        add("positive", "interruptions", "Perfect focus! No interruptions during this session.")
    elif averages.sessions == 0 or averages.interruptions is None:
        add(
            "neutral",
            "interruptions",
            f"{facts.interruption_count} {interruptions}; nothing to compare with yet: "
            "your average starts after your next session.",
        )
    elif facts.interruption_count > averages.interruptions:
        add(
            "suggestion",
            "interruptions",
            f"{facts.interruption_count} {interruptions}, more than your average of "
            f"{averages.interruptions:.1f}. Silencing notifications may help.",
        )
    else:
        add(
            "neutral",
            "interruptions",
            f"{facts.interruption_count} {interruptions}, no more than usual for you.",
        )

    if facts.focus_score is not None:
        if facts.focus_score >= HIGH_SCORE:
            add("positive", "focus_score", "You rated this session highly. Keep up the great work!")
        elif facts.focus_score <= LOW_SCORE:
            add(
                "suggestion",
                "focus_score",
                f"You rated this session {facts.focus_score}/5. Note what got in the way, "
                "so you can plan around it next time.",
            )

    if facts.expected_duration:
        overrun = round((minutes - facts.expected_duration) / facts.expected_duration * 100)
        if overrun > OVERRUN_PCT:
            add(
                "neutral",
                "estimate",
                f"This took {overrun}% longer than the {facts.expected_duration}min you planned.",
            )
        elif facts.was_completed:
            add("positive", "estimate", f"Finished within your {facts.expected_duration}-minute estimate.")

    if facts.local_hour in peak_hours:
        add("positive", "peak_hour", f"You worked in one of your peak focus hours ({facts.local_hour}:00).")
    return insights
