"""Profile metrics against hand-computed expectations, in the user's own timezone."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from focus_app.models import UserFocusProfile
from focus_app.services.focus import profiles
from tests.integration.factories import make_session, make_task, make_user

UTC = UTC


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def seed_new_york_user(db) -> str:
    """Four ended sessions and one active one; New York is UTC-5 in January."""
    user = make_user(db, "nyc", "America/New_York")
    bio = make_task(db, user, "BIO101")
    math = make_task(db, user, "MATH200")
    # Mon 09:00 local
    make_session(
        db,
        user,
        at("2026-01-05T14:00"),
        30,
        expected=25,
        break_minutes=5,
        interruptions=1,
        completed=True,
        score=4,
        task_id=bio,
    )
    # Tue 09:30 local
    make_session(
        db,
        user,
        at("2026-01-06T14:30"),
        20,
        expected=25,
        interruptions=0,
        completed=True,
        score=5,
        task_id=bio,
    )
    # Tue 14:00 local
    make_session(
        db,
        user,
        at("2026-01-06T19:00"),
        50,
        expected=40,
        break_minutes=10,
        interruptions=3,
        completed=False,
        score=2,
        task_id=math,
    )
    # Wed 22:00 local, although Thursday 03:00 in UTC
    make_session(
        db, user, at("2026-01-08T03:00"), 40, expected=None, interruptions=2, completed=True, score=None
    )
    # Active: not analysed
    make_session(db, user, at("2026-01-09T15:00"), None)
    return user


def test_every_metric_matches_hand_computation(db):
    user = seed_new_york_user(db)

    outcome = profiles.compute_profiles(db, [user], min_sessions=3)
    db.commit()

    assert outcome.computed == 1 and outcome.skipped == 0
    profile = db.query(UserFocusProfile).filter_by(user_id=user).one()
    assert profile.sessions_analyzed_count == 4
    assert profile.total_sessions_count == 4
    assert profile.completed_sessions_count == 3
    assert profile.avg_focus_duration_minutes == 35  # (30+20+50+40)/4
    assert profile.avg_break_duration_minutes == 4  # 15/4 = 3.75
    assert float(profile.avg_interruption_count) == 1.5
    assert float(profile.avg_completion_ratio) == 0.75
    # (25-30)/25 = -20%, (25-20)/25 = +20%, (40-50)/40 = -25% -> mean -8.33 (underestimates)
    assert float(profile.avg_underestimation_pct) == -8.33
    assert profile.peak_focus_hours == [9, 14, 22]
    assert profile.peak_focus_days == ["Tue", "Wed", "Mon"]
    assert profile.focus_by_hour == {"9": 2, "14": 1, "22": 1}
    assert profile.performance_by_course == {
        "BIO101": {
            "sessions": 2,
            "completed": 2,
            "total_minutes": 50,
            "avg_focus_score": 4.5,
            "completion_ratio": 1.0,
        },
        "MATH200": {
            "sessions": 1,
            "completed": 0,
            "total_minutes": 50,
            "avg_focus_score": 2.0,
            "completion_ratio": 0.0,
        },
    }
    assert profile.source_version == 5


def test_utc_user_gets_utc_hours(db):
    user = make_user(db, "utc-user")
    for start in ("2026-01-05T14:00", "2026-01-06T14:30", "2026-01-08T03:00"):
        make_session(db, user, at(start), 25)

    profiles.compute_profiles(db, [user], min_sessions=3)
    db.commit()

    profile = db.query(UserFocusProfile).filter_by(user_id=user).one()
    assert profile.peak_focus_hours == [14, 3]
    assert profile.peak_focus_days == ["Mon", "Tue", "Thu"]


def test_under_three_sessions_gets_no_profile_and_loses_an_old_one(db):
    user = seed_new_york_user(db)
    profiles.compute_profiles(db, [user], min_sessions=3)
    db.commit()
    assert db.query(UserFocusProfile).filter_by(user_id=user).count() == 1

    db.execute(text("DELETE FROM focus_sessions WHERE user_id = :u AND duration_minutes >= 40"), {"u": user})
    db.execute(text("UPDATE users SET sessions_version = sessions_version + 1 WHERE id = :u"), {"u": user})
    db.commit()
    outcome = profiles.compute_profiles(db, [user, "nobody"], min_sessions=3)
    db.commit()

    assert outcome.computed == 0 and outcome.skipped == 2
    assert db.query(UserFocusProfile).filter_by(user_id=user).count() == 0


def test_extreme_underestimation_is_clamped_not_an_error(db):
    user = make_user(db, "overrunner")
    for day in (5, 6, 7):
        make_session(db, user, at(f"2026-01-0{day}T10:00"), 700, expected=1)

    profiles.compute_profiles(db, [user], min_sessions=3)
    db.commit()

    assert float(db.query(UserFocusProfile).filter_by(user_id=user).one().avg_underestimation_pct) == -999.99
