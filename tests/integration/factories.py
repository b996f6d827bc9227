"""Rows written straight into PostgreSQL for tests that need sessions in the past."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from focus_app.models import FocusSession, Task, User


def make_user(db: Session, user_id: str, timezone: str = "UTC") -> str:
    db.execute(insert(User).values(id=user_id, timezone=timezone))
    db.commit()
    return user_id


def make_task(db: Session, user_id: str, course: str | None, title: str = "Study") -> object:
    task_id = db.execute(
        insert(Task).values(user_id=user_id, title=title, course=course).returning(Task.id)
    ).scalar_one()
    db.commit()
    return task_id


def make_session(
    db: Session,
    user_id: str,
    start: datetime,
    duration: int | None,
    *,
    expected: int | None = 25,
    break_minutes: int = 0,
    interruptions: int = 0,
    completed: bool = True,
    score: int | None = None,
    task_id=None,
    bump_version: bool = True,
) -> object:
    """An ended session (or an active one with duration=None), bumping the user's version."""
    ended = duration is not None
    end = start + timedelta(minutes=duration + break_minutes) if ended else None
    session_id = db.execute(
        insert(FocusSession)
        .values(
            user_id=user_id,
            task_id=task_id,
            start_time=start,
            actual_start_time=start,
            end_time=end,
            actual_end_time=end,
            duration_minutes=duration,
            expected_duration=expected,
            break_minutes=break_minutes,
            interruption_count=interruptions,
            was_completed=completed,
            focus_score=score,
        )
        .returning(FocusSession.id)
    ).scalar_one()
    if bump_version:
        db.execute(update(User).where(User.id == user_id).values(sessions_version=User.sessions_version + 1))
    db.commit()
    return session_id
