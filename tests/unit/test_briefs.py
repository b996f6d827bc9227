"""The weekly brief from numbers (seed 004), and the week rules."""

from __future__ import annotations

from datetime import UTC, date, datetime

from focus_app.services.intelligence import briefs, weeks
from focus_app.services.intelligence.briefs import WeekNumbers, WeekTotals

WEEK = date(2026, 1, 5)


def busy_week() -> WeekNumbers:
    return WeekNumbers(
        week_of=WEEK,
        weeks={
            0: WeekTotals(sessions=4, minutes=200, completed=3, score_sum=16, scored=4, interruptions=2),
            1: WeekTotals(sessions=3, minutes=160, completed=3, score_sum=12, scored=3, interruptions=1),
            2: WeekTotals(sessions=2, minutes=100),
            3: WeekTotals(sessions=1, minutes=50),
        },
        by_day={1: (2, 110), 3: (2, 90)},
        by_hour={9: (2, 100), 14: (1, 60), 20: (1, 40)},
        profile_peak_hours=[9, 10],
        profile_peak_days=["Mon"],
    )


def test_week_stats_from_hand_computed_numbers():
    stats = briefs.build_brief(busy_week())["week_stats"]

    assert stats["focus_minutes"] == 200
    assert stats["sessions"] == 4
    assert stats["completed"] == 3
    assert stats["completion_rate"] == 0.75
    assert stats["avg_focus_score"] == 4.0
    assert stats["interruptions"] == 2
    assert stats["by_day"]["Mon"] == {"sessions": 2, "minutes": 110}
    assert stats["by_day"]["Tue"] == {"sessions": 0, "minutes": 0}
    assert list(stats["by_day"]) == list(briefs.DAYS)


def test_patterns_compare_the_week_with_the_profile():
    patterns = briefs.build_brief(busy_week())["patterns"]

    assert patterns["peak_hours"] == [9, 14, 20]  # 14 beats 20 on minutes
    assert patterns["peak_days"] == ["Mon", "Wed"]  # tie on sessions, Monday has more minutes
    assert patterns["hours_in_usual_peak"] == [9]
    assert patterns["new_peak_hours"] == [14, 20]
    assert patterns["best_day"] == "Mon"


def test_velocity_week_over_week_and_four_week_trend():
    velocity = briefs.build_brief(busy_week())["velocity"]

    assert velocity["focus_minutes_change_pct"] == 25  # 160 -> 200
    assert velocity["sessions_change_pct"] == 33  # 3 -> 4
    assert [w["focus_minutes"] for w in velocity["trend"]] == [50, 100, 160, 200]
    assert velocity["trend"][0]["week_of"] == "2025-12-15"
    assert velocity["trend_direction"] == "rising"


def test_trend_direction():
    assert briefs.trend_direction([100, 100, 100, 100]) == "steady"
    assert briefs.trend_direction([200, 150, 100, 50]) == "falling"
    assert briefs.trend_direction([0, 0, 0, 0]) == "no_activity"
    assert briefs.trend_direction([100, 105, 95, 102]) == "steady"


def test_insights_are_typed_messages():
    insights = briefs.build_brief(busy_week())["insights"]
    by_metric = {i["metric"]: i for i in insights}

    assert by_metric["focus_time"] == {
        "type": "positive",
        "metric": "focus_time",
        "message": "You focused 25% more than the week before.",
    }
    assert by_metric["focus_score"]["type"] == "positive"
    assert by_metric["peak_hours"]["type"] == "positive"
    assert by_metric["trend"]["type"] == "positive"
    assert "completion" not in by_metric  # 75% is neither good nor low
    assert all(i["type"] in ("positive", "neutral", "suggestion") for i in insights)


def test_struggling_week_gets_suggestions():
    numbers = WeekNumbers(
        week_of=WEEK,
        weeks={
            0: WeekTotals(sessions=2, minutes=40, completed=0, score_sum=3, scored=2, interruptions=7),
            1: WeekTotals(sessions=4, minutes=200, completed=4),
            2: WeekTotals(sessions=5, minutes=250, completed=5),
            3: WeekTotals(sessions=6, minutes=300, completed=6),
        },
        by_day={2: (2, 40)},
        by_hour={22: (2, 40)},
    )
    kinds = {i["metric"]: i["type"] for i in briefs.build_brief(numbers)["insights"]}

    assert kinds == {
        "focus_time": "suggestion",
        "completion": "suggestion",
        "focus_score": "suggestion",
        "interruptions": "suggestion",
        "trend": "suggestion",
    }


def test_main_story_is_built_from_the_numbers():
    story = briefs.build_brief(busy_week())["main_story"]

    assert story.startswith(
        "In the week of January 5, 2026 you focused for 3 h 20 min across 4 sessions "
        "and completed 3 of them (75%)."
    )
    assert "average focus score was 4/5, with 2 interruptions" in story
    assert "strongest day was Monday" in story and "around 9:00" in story
    assert "25% more focus time than the week before" in story
    assert story.endswith("Over four weeks your focus time is rising.")


def test_an_empty_week_is_an_honest_brief():
    numbers = WeekNumbers(
        week_of=WEEK,
        weeks={
            1: WeekTotals(sessions=1, minutes=45),
            2: WeekTotals(sessions=1, minutes=60),
            3: WeekTotals(1, 90),
        },
    )
    brief = briefs.build_brief(numbers)

    assert brief["week_stats"]["sessions"] == 0
    assert brief["week_stats"]["completion_rate"] is None
    assert brief["week_stats"]["avg_focus_score"] is None
    assert brief["main_story"].startswith("No focus sessions were recorded in the week of January 5, 2026.")
    assert "The week before, you focused for 45 min." in brief["main_story"]
    assert [i["metric"] for i in brief["insights"]] == ["activity"]
    assert brief["patterns"]["peak_hours"] == [] and brief["patterns"]["best_day"] is None
    assert brief["velocity"]["focus_minutes_change_pct"] == -100
    assert brief["velocity"]["trend_direction"] == "falling"


def test_week_just_ended_in_the_configured_timezone():
    # Monday 2026-01-12 01:00 UTC: the week of Jan 5 has just ended.
    assert weeks.week_just_ended(datetime(2026, 1, 12, 1, tzinfo=UTC), "UTC") == date(2026, 1, 5)
    # Sunday 23:59 UTC is still inside that week: the one before is the latest ended.
    assert weeks.week_just_ended(datetime(2026, 1, 11, 23, 59, tzinfo=UTC), "UTC") == date(2025, 12, 29)
    # ... but in Berlin it is already Monday 00:59.
    assert weeks.week_just_ended(datetime(2026, 1, 11, 23, 59, tzinfo=UTC), "Europe/Berlin") == date(
        2026, 1, 5
    )


def test_week_slot_is_the_iso_week():
    assert weeks.week_slot(date(2026, 1, 5)) == "2026-W02"
    assert weeks.week_slot(date(2024, 12, 30)) == "2025-W01"


def test_the_latest_ended_week_is_the_one_that_ended_first_anywhere():
    # Sunday 2026-01-11 10:00 UTC: it is already Monday 00:00 on Kiritimati (UTC+14).
    assert weeks.latest_ended_week(datetime(2026, 1, 11, 10, tzinfo=UTC)) == date(2026, 1, 5)
    assert weeks.latest_ended_week(datetime(2026, 1, 11, 9, 59, tzinfo=UTC)) == date(2025, 12, 29)


def test_week_of_rules():
    latest = date(2026, 1, 5)
    assert weeks.week_of_problem(date(2026, 1, 5), latest) is None
    assert weeks.week_of_problem(date(2025, 12, 29), latest) is None
    assert "Monday" in weeks.week_of_problem(date(2026, 1, 6), latest)
    assert "ended" in weeks.week_of_problem(date(2026, 1, 12), latest)
