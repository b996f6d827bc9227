"""The data of a user's dashboard: focus per local day and the latest analysis."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from focus_app.models import User
from focus_app.models.analysis import AnalysisJob


def daily_focus(db: Session, user_id: str, days: int) -> list[dict[str, Any]]:
    """Focused minutes and sessions for each of the last `days` local days (today included)."""
    timezone = db.scalar(select(User.timezone).where(User.id == user_id)) or "UTC"
    today = datetime.now(ZoneInfo(timezone)).date()
    first = today - timedelta(days=days - 1)
    rows = db.execute(
        text(
            """
            SELECT (start_time AT TIME ZONE :tz)::date AS day, count(*) AS sessions,
                   coalesce(sum(duration_minutes), 0) AS minutes,
                   count(*) FILTER (WHERE was_completed) AS completed
            FROM focus_sessions
            WHERE user_id = :user_id AND end_time IS NOT NULL
              AND start_time >= (CAST(:first AS date))::timestamp AT TIME ZONE :tz
            GROUP BY 1
            """
        ),
        {"tz": timezone, "user_id": user_id, "first": first},
    ).all()
    by_day = {row.day: row for row in rows}
    out = []
    for n in range(days):
        day = first + timedelta(days=n)
        row = by_day.get(day)
        out.append(
            {
                "date": day.isoformat(),
                "minutes": int(row.minutes) if row else 0,
                "sessions": row.sessions if row else 0,
                "completed": row.completed if row else 0,
            }
        )
    return out


def last_analysis(db: Session, user_id: str) -> AnalysisJob | None:
    return db.scalars(
        select(AnalysisJob)
        .where(AnalysisJob.user_id == user_id)
        .order_by(AnalysisJob.created_at.desc())
        .limit(1)
    ).first()
