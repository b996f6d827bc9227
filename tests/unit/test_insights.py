from focus_app.services.focus.insights import SessionFacts, UserAverages, build_session_insights


def facts(**overrides) -> SessionFacts:
    values = dict(
        duration_minutes=30,
        expected_duration=None,
        interruption_count=1,
        focus_score=None,
        was_completed=True,
        local_hour=9,
    )
    values.update(overrides)
    return SessionFacts(**values)


AVERAGE = UserAverages(sessions=5, duration_minutes=24.0, interruptions=1.0, focus_score=3.0)


def by_metric(insights):
    return {insight["metric"]: insight for insight in insights}


def test_longer_than_usual_is_praised_with_the_percentage():
    insight = by_metric(build_session_insights(facts(), AVERAGE, []))["duration"]
    assert insight == {
        "type": "positive",
        "metric": "duration",
        "message": "Great job! You focused 30min, 25% longer than your average.",
    }


def test_much_shorter_than_usual_gets_a_suggestion_and_close_is_neutral():
    short = by_metric(build_session_insights(facts(duration_minutes=12), AVERAGE, []))["duration"]
    assert short["type"] == "suggestion" and "50% shorter than your average of 24min" in short["message"]
    close = by_metric(build_session_insights(facts(duration_minutes=25), AVERAGE, []))["duration"]
    assert close["type"] == "neutral"


def test_first_session_has_nothing_to_compare_with():
    first = UserAverages(sessions=0, duration_minutes=None, interruptions=None, focus_score=None)
    insights = by_metric(build_session_insights(facts(), first, []))
    assert insights["duration"]["type"] == "neutral"
    assert "after your next session" in insights["duration"]["message"]


def test_interruptions_zero_more_than_usual_and_usual():
    assert (
        by_metric(build_session_insights(facts(interruption_count=0), AVERAGE, []))["interruptions"][
            "message"
        ]
        == "Perfect focus! No interruptions during this session."
    )
    more = by_metric(build_session_insights(facts(interruption_count=3), AVERAGE, []))
    assert more["interruptions"]["type"] == "suggestion"
    usual = by_metric(build_session_insights(facts(interruption_count=1), AVERAGE, []))
    assert usual["interruptions"]["type"] == "neutral"


def test_scores_high_low_and_middle():
    assert (
        by_metric(build_session_insights(facts(focus_score=4), AVERAGE, []))["focus_score"]["type"]
        == "positive"
    )
    assert (
        by_metric(build_session_insights(facts(focus_score=2), AVERAGE, []))["focus_score"]["type"]
        == "suggestion"
    )
    assert "focus_score" not in by_metric(build_session_insights(facts(focus_score=3), AVERAGE, []))


def test_estimates_overrun_and_on_time():
    over = by_metric(build_session_insights(facts(expected_duration=20), AVERAGE, []))["estimate"]
    assert over["message"] == "This took 50% longer than the 20min you planned."
    on_time = by_metric(build_session_insights(facts(expected_duration=30), AVERAGE, []))["estimate"]
    assert on_time["type"] == "positive"
    abandoned = by_metric(
        build_session_insights(facts(expected_duration=30, was_completed=False), AVERAGE, [])
    )
    assert "estimate" not in abandoned


def test_peak_hour_is_recognised():
    insights = by_metric(build_session_insights(facts(local_hour=14), AVERAGE, [9, 14, 22]))
    assert insights["peak_hour"]["message"] == "You worked in one of your peak focus hours (14:00)."
    assert "peak_hour" not in by_metric(build_session_insights(facts(local_hour=3), AVERAGE, [9]))


def test_a_first_session_with_interruptions_says_there_is_nothing_to_compare_yet():
    """It used to say "1 interruptions, no more than usual for you" against zero sessions."""
    first = UserAverages(sessions=0, duration_minutes=None, interruptions=None, focus_score=None)
    insight = by_metric(build_session_insights(facts(interruption_count=1), first, []))["interruptions"]
    assert insight == {
        "type": "neutral",
        "metric": "interruptions",
        "message": "1 interruption; nothing to compare with yet: "
        "your average starts after your next session.",
    }
