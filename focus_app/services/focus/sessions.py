"""Focus sessions (seed 001): start, end, history, delete, per-session insights.

Every change to a user's sessions bumps `users.sessions_version` in the same transaction and
raises the user's profile flag after the commit, so the profile job finds the user from Redis
quickly and from PostgreSQL even when the flag is lost.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis
from sqlalchemy import Connection, Row, Select, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from focus_app.models import FocusSession, User, UserFocusProfile
from focus_app.models.focus import DEFAULT_TIMEZONE
from focus_app.services.focus import flags
from focus_app.services.focus.insights import SessionFacts, UserAverages, build_session_insights
from focus_app.services.focus.users import NEW_USER_CTE
from focus_app.services.jobkit.errors import Conflict, InvalidInput, NotFound
from focus_app.services.jobkit.pagination import Page, paginate

# Server-side timing from PostgreSQL's clock, shared by every web process; rounded half to even.
ELAPSED_MINUTES = "GREATEST(0, round(extract(epoch FROM now() - start_time)::float8 / 60))::int"

_START_SESSION = text(
    f"""
    WITH {NEW_USER_CTE}
    INSERT INTO focus_sessions
        (user_id, task_id, start_time, actual_start_time, expected_duration, context, session_type)
    SELECT :user_id, :task_id, now(), now(), :expected_duration, :context, :session_type
    WHERE CAST(:task_id AS uuid) IS NULL
       OR EXISTS (SELECT 1 FROM tasks WHERE id = CAST(:task_id AS uuid) AND user_id = :user_id)
    RETURNING *
    """
)

_END_SESSION = text(
    f"""
    WITH target AS (
        SELECT id, {ELAPSED_MINUTES} AS elapsed FROM focus_sessions
        WHERE id = CAST(:session_id AS uuid) AND user_id = :user_id AND end_time IS NULL
    ), ended AS (
        UPDATE focus_sessions AS s SET
            end_time = now(),
            actual_end_time = now(),
            duration_minutes = t.elapsed - COALESCE(:break_minutes, 0),
            was_completed = :was_completed,
            focus_score = COALESCE(:focus_score, s.focus_score),
            interruption_count = COALESCE(:interruption_count, s.interruption_count),
            break_minutes = COALESCE(:break_minutes, s.break_minutes),
            cycles_completed = COALESCE(:cycles_completed, s.cycles_completed),
            session_notes = COALESCE(:session_notes, s.session_notes),
            focus_quality = COALESCE(CAST(:focus_quality AS jsonb), s.focus_quality)
        FROM target AS t
        WHERE s.id = t.id AND s.end_time IS NULL AND COALESCE(:break_minutes, 0) <= t.elapsed
        RETURNING s.*
    ), bumped AS (
        UPDATE users SET sessions_version = sessions_version + 1
        WHERE id = :user_id AND EXISTS (SELECT 1 FROM ended)
        RETURNING sessions_version
    )
    SELECT ended.*, bumped.sessions_version FROM ended CROSS JOIN bumped
    """
)

_END_REFUSED = text(
    f"""
    SELECT end_time, {ELAPSED_MINUTES} AS elapsed FROM focus_sessions
    WHERE id = CAST(:session_id AS uuid) AND user_id = :user_id
    """
)


def start_session(
    connection: Connection,
    user_id: str,
    *,
    new_user_timezone: str | None,
    expected_duration: int | None,
    task_id: uuid.UUID | None,
    context: str | None,
    session_type: str,
) -> Row:
    """One autocommitted statement: the user row if new, the task check and the insert."""
    try:
        session = connection.execute(
            _START_SESSION,
            {
                "user_id": user_id,
                "timezone": new_user_timezone or DEFAULT_TIMEZONE,
                "task_id": str(task_id) if task_id is not None else None,
                "expected_duration": expected_duration,
                "context": context,
                "session_type": session_type,
            },
        ).one_or_none()
    except IntegrityError as exc:
        if "uq_focus_sessions_one_active_per_user" not in str(exc.orig):
            raise
        active = connection.execute(
            select(FocusSession.id).where(FocusSession.user_id == user_id, FocusSession.end_time.is_(None))
        ).scalar_one_or_none()
        raise Conflict(
            f"session {active or ''} is still active; end it before starting another",
            {"active_session_id": str(active) if active else None},
        ) from None
    if session is None:
        raise InvalidInput("unknown task", {"json": {"task_id": [f"no task {task_id} for this user"]}})
    return session


def end_session(
    connection: Connection,
    client: redis.Redis,
    user_id: str,
    session_id: uuid.UUID,
    *,
    flag_ttl_seconds: int,
    **outcome: Any,
) -> Row:
    """One autocommitted statement records the outcome and bumps the user's sessions_version; a
    compare-and-set on end_time makes a second end a 409. Refusals are explained afterwards.
    The user's profile flag goes up once the change is committed."""
    focus_quality = outcome.get("focus_quality")
    parameters = {
        "user_id": user_id,
        "session_id": str(session_id),
        "was_completed": outcome["was_completed"],
        **{
            field: outcome.get(field)
            for field in (
                "focus_score",
                "interruption_count",
                "break_minutes",
                "cycles_completed",
                "session_notes",
            )
        },
        "focus_quality": json.dumps(focus_quality) if focus_quality is not None else None,
    }
    ended = connection.execute(_END_SESSION, parameters).one_or_none()
    if ended is not None:
        flags.sessions_changed(client, user_id, ended.sessions_version, flag_ttl_seconds)
        return ended
    refused = connection.execute(_END_REFUSED, parameters).one_or_none()
    if refused is None:
        raise NotFound(f"focus session {session_id} not found")
    if refused.end_time is not None:
        raise Conflict(f"session {session_id} already ended at {refused.end_time.isoformat()}")
    if (outcome.get("break_minutes") or 0) > refused.elapsed:
        raise InvalidInput(
            "break_minutes exceeds the session's length",
            {"json": {"break_minutes": [f"must not exceed the {refused.elapsed} elapsed minutes"]}},
        )
    raise Conflict(f"session {session_id} already ended")


def delete_session(
    db: Session, client: redis.Redis, user_id: str, session_id: uuid.UUID, *, flag_ttl_seconds: int
) -> None:
    deleted = db.execute(
        delete(FocusSession)
        .where(FocusSession.id == session_id, FocusSession.user_id == user_id)
        .returning(FocusSession.id)
    ).scalar_one_or_none()
    if deleted is None:
        db.rollback()
        raise NotFound(f"focus session {session_id} not found")
    version = _bump_sessions_version(db, user_id)
    db.commit()
    flags.sessions_changed(client, user_id, version, flag_ttl_seconds)


def active_session(db: Session, user_id: str) -> FocusSession | None:
    return db.scalars(
        select(FocusSession).where(FocusSession.user_id == user_id, FocusSession.end_time.is_(None))
    ).one_or_none()


@dataclass(frozen=True)
class HistoryFilter:
    start_date: date | None = None
    end_date: date | None = None
    session_type: str | None = None
    task_id: uuid.UUID | None = None
    was_completed: bool | None = None


def session_history(
    db: Session, user_id: str, filters: HistoryFilter, page: int, page_size: int
) -> Page[FocusSession]:
    """Newest first; dates are whole days in the user's timezone."""
    if filters.start_date and filters.end_date and filters.start_date > filters.end_date:
        raise InvalidInput(
            "start_date is after end_date",
            {"query": {"start_date": ["must not be after end_date"]}},
        )
    zone = ZoneInfo(db.scalar(select(User.timezone).where(User.id == user_id)) or "UTC")
    query: Select = select(FocusSession).where(FocusSession.user_id == user_id)
    if filters.start_date:
        query = query.where(FocusSession.start_time >= datetime.combine(filters.start_date, time(), zone))
    if filters.end_date:
        next_day = filters.end_date + timedelta(days=1)
        query = query.where(FocusSession.start_time < datetime.combine(next_day, time(), zone))
    if filters.session_type:
        query = query.where(FocusSession.session_type == filters.session_type)
    if filters.task_id:
        query = query.where(FocusSession.task_id == filters.task_id)
    if filters.was_completed is not None:
        query = query.where(FocusSession.was_completed.is_(filters.was_completed))
    return paginate(db, query, (FocusSession.start_time.desc(), FocusSession.id), page, page_size)


def session_insights(db: Session, user_id: str, session_id: uuid.UUID) -> dict[str, Any]:
    """Compare one ended session with the user's other ended sessions (seed 001 insights)."""
    session = _own_session(db, user_id, session_id)
    if session.end_time is None:
        raise Conflict(f"session {session_id} is still active; insights come after it ends")
    others = db.execute(
        select(
            func.count(),
            func.avg(FocusSession.duration_minutes),
            func.avg(FocusSession.interruption_count),
            func.avg(FocusSession.focus_score),
        ).where(
            FocusSession.user_id == user_id,
            FocusSession.end_time.is_not(None),
            FocusSession.id != session_id,
        )
    ).one()
    timezone, peak_hours = db.execute(
        select(User.timezone, UserFocusProfile.peak_focus_hours)
        .outerjoin(UserFocusProfile, UserFocusProfile.user_id == User.id)
        .where(User.id == user_id)
    ).one()
    averages = UserAverages(
        sessions=others[0],
        duration_minutes=_float(others[1]),
        interruptions=_float(others[2]),
        focus_score=_float(others[3]),
    )
    facts = SessionFacts(
        duration_minutes=session.duration_minutes or 0,
        expected_duration=session.expected_duration,
        interruption_count=session.interruption_count,
        focus_score=session.focus_score,
        was_completed=session.was_completed,
        local_hour=session.start_time.astimezone(ZoneInfo(timezone)).hour,
    )
    return {
        "session_id": session.id,
        "insights": build_session_insights(facts, averages, peak_hours or []),
        "compared_with": averages,
    }


def _own_session(db: Session, user_id: str, session_id: uuid.UUID) -> FocusSession:
    """Another user's session answers exactly like a missing one."""
    session = db.scalars(
        select(FocusSession).where(FocusSession.id == session_id, FocusSession.user_id == user_id)
    ).one_or_none()
    if session is None:
        raise NotFound(f"focus session {session_id} not found")
    return session


def _bump_sessions_version(db: Session, user_id: str) -> int:
    return db.execute(
        update(User)
        .where(User.id == user_id)
        .values(sessions_version=User.sessions_version + 1)
        .returning(User.sessions_version)
    ).scalar_one()


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number
