"""A user's own settings: timezone and weekly-brief preferences."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models import User
from focus_app.models.intelligence import UserPreference
from focus_app.services.focus import flags
from focus_app.services.jobkit.errors import InvalidInput, NotFound

BRIEF_FREQUENCIES = ("weekly",)


def account_settings(db: Session, user_id: str) -> dict[str, Any]:
    """Timezone and weekly-brief preferences; a user without a preferences row has the seed's defaults."""
    row = db.execute(
        select(
            User.timezone,
            User.created_at,
            UserPreference.intelligence_generation_enabled,
            UserPreference.intelligence_generation_frequency,
            UserPreference.intelligence_notification_enabled,
            UserPreference.last_intelligence_generated_at,
        )
        .outerjoin(UserPreference, UserPreference.user_id == User.id)
        .where(User.id == user_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return {
        "user_id": user_id,
        "timezone": row.timezone,
        "created_at": row.created_at,
        "weekly_brief": {
            "enabled": True
            if row.intelligence_generation_enabled is None
            else row.intelligence_generation_enabled,
            "frequency": row.intelligence_generation_frequency or "weekly",
            "notification": True
            if row.intelligence_notification_enabled is None
            else row.intelligence_notification_enabled,
            "last_generated_at": row.last_intelligence_generated_at,
        },
    }


def validate_timezone(name: str) -> None:
    """An IANA zone name, or a 422 naming the field."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "unknown timezone", {"json": {"timezone": [f"{name!r} is not an IANA timezone name"]}}
        ) from None


def update_settings(
    db: Session,
    client: redis.Redis,
    user_id: str,
    *,
    flag_ttl_seconds: int,
    timezone: str | None = None,
    weekly_brief: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply a partial change in one transaction. A new timezone moves every local hour and day of
    the profile, so it bumps sessions_version and raises the profile flag exactly like a session
    change does. A new timezone or new brief preferences leave the next brief's due time to the
    next tick (it is Monday 02:00 in the new zone; turning briefs on brings the missed weeks)."""
    flag_version = None
    if timezone is not None:
        validate_timezone(timezone)
        flag_version = db.execute(
            update(User)
            .where(User.id == user_id, User.timezone != timezone)
            .values(timezone=timezone, sessions_version=User.sessions_version + 1, brief_due_at=None)
            .returning(User.sessions_version)
        ).scalar_one_or_none()
    if weekly_brief:
        columns = {
            "enabled": "intelligence_generation_enabled",
            "frequency": "intelligence_generation_frequency",
            "notification": "intelligence_notification_enabled",
        }
        values = {columns[key]: value for key, value in weekly_brief.items()}
        db.execute(
            pg_insert(UserPreference)
            .values(user_id=user_id, **values)
            .on_conflict_do_update(index_elements=["user_id"], set_={**values, "updated_at": func.now()})
        )
        db.execute(update(User).where(User.id == user_id).values(brief_due_at=None))
    db.commit()
    if flag_version is not None:
        flags.sessions_changed(client, user_id, flag_version, flag_ttl_seconds)
    return account_settings(db, user_id)
