"""What a user controls about their own account: settings, export, deletion (seed 001 "Data Retention").

Exports stream from a server-side cursor, so their memory does not grow with the number of
sessions. Deletion removes every row keyed by the user in one transaction, children before the
user row, so jobs that are writing the same user at that moment wait for it or see it gone.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from focus_app.models import Base, FocusSession, Task, User, UserFocusProfile
from focus_app.models.analysis import AnalysisJob, ChatMessage, ProfileInterpretation
from focus_app.models.intelligence import UserPreference, WeeklyBrief
from focus_app.models.maintenance import ProfileAttribute, ProfileEntity
from focus_app.services import cache, intelligence
from focus_app.services.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

EXPORT_BATCH_ROWS = 1000
DELETE_ATTEMPTS = 3
BRIEF_FREQUENCIES = ("weekly",)
# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class SettingsChange:
    """The settings after a committed change, and the version to flag when the timezone moved."""

    settings: dict[str, Any]
    flag_version: int | None


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
    db: Session, user_id: str, *, timezone: str | None = None, weekly_brief: dict[str, Any] | None = None
) -> SettingsChange:
    """Apply a partial change in one transaction. A new timezone moves every local hour and day of
    the profile, so it bumps sessions_version exactly like a session change does."""
    flag_version = None
    if timezone is not None:
        validate_timezone(timezone)
        flag_version = db.execute(
            update(User)
            .where(User.id == user_id, User.timezone != timezone)
            .values(timezone=timezone, sessions_version=User.sessions_version + 1)
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
    db.commit()
    return SettingsChange(account_settings(db, user_id), flag_version)


# ---------------------------------------------------------------- export

CSV_COLUMNS = (
    "id",
    "start_time",
    "end_time",
    "duration_minutes",
    "expected_duration",
    "break_minutes",
    "session_type",
    "cycles_completed",
    "was_completed",
    "focus_score",
    "interruption_count",
    "context",
    "session_notes",
    "focus_quality",
    "task_id",
    "task_title",
    "task_course",
    "created_at",
)
SESSION_COLUMNS = [c for c in CSV_COLUMNS if not c.startswith("task_")] + ["task_id"]


def _session_rows(db: Session, user_id: str) -> Iterator[Any]:
    """The user's sessions oldest first, fetched EXPORT_BATCH_ROWS at a time (server-side cursor)."""
    columns = [getattr(FocusSession, name) for name in dict.fromkeys(SESSION_COLUMNS)]
    query = (
        select(*columns, Task.title.label("task_title"), Task.course.label("task_course"))
        .outerjoin(Task, Task.id == FocusSession.task_id)
        .where(FocusSession.user_id == user_id)
        .order_by(FocusSession.start_time, FocusSession.id)
    )
    result = db.execute(query, execution_options={"yield_per": EXPORT_BATCH_ROWS})
    try:
        yield from result
    finally:
        result.close()


def export_csv(db: Session, user_id: str) -> Iterator[str]:
    """The sessions as CSV, a chunk per batch of rows; the caller streams it to the client."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    rows = 0
    for row in _session_rows(db, user_id):
        writer.writerow([_csv_cell(getattr(row, column)) for column in CSV_COLUMNS])
        rows += 1
        if rows % EXPORT_BATCH_ROWS == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    chunk = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return chunk


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def export_json(db: Session, user_id: str) -> Iterator[str]:
    """Everything stored about the user as one JSON document, sessions streamed last."""
    yield '{"account": ' + _dumps(account_settings(db, user_id))
    profile = db.scalars(select(UserFocusProfile).where(UserFocusProfile.user_id == user_id)).one_or_none()
    yield ', "profile": ' + _dumps(_row_dict(profile) if profile else None)
    attributes = db.scalars(
        select(ProfileAttribute)
        .where(ProfileAttribute.entity_type == "user", ProfileAttribute.entity_id == user_id)
        .order_by(ProfileAttribute.category, ProfileAttribute.key)
    )
    yield ', "attributes": ' + _dumps([_row_dict(row) for row in attributes])
    for key, model, order in (
        ("interpretations", ProfileInterpretation, ProfileInterpretation.context_type),
        ("briefs", WeeklyBrief, WeeklyBrief.week_of),
        ("tasks", Task, Task.created_at),
        ("chat_messages", ChatMessage, ChatMessage.created_at),
        ("analysis_jobs", AnalysisJob, AnalysisJob.created_at),
    ):
        rows = db.scalars(select(model).where(model.user_id == user_id).order_by(order))
        yield f', "{key}": ' + _dumps([_row_dict(row) for row in rows])
    yield ', "sessions": ['
    chunk: list[str] = []
    for n, row in enumerate(_session_rows(db, user_id)):
        chunk.append(("," if n else "") + _dumps(dict(row._mapping)))
        if len(chunk) == EXPORT_BATCH_ROWS:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "]}"


def _row_dict(row: Any) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------- deletion


def user_tables() -> tuple[list[Table], list[Table]]:
    """Every table with a user_id column, so new families are covered: those with a foreign key to
    users (children first), and those without one (e.g. job_retry_queue)."""
    tables = [table for table in reversed(Base.metadata.sorted_tables) if "user_id" in table.c]
    linked = [t for t in tables if any(fk.column.table.name == "users" for fk in t.c.user_id.foreign_keys)]
    return linked, [t for t in tables if t not in linked]


def delete_account(db: Session, client: redis.Redis, user_id: str) -> dict[str, int]:
    """Delete every row of the user in one transaction, then their Redis keys.

    Rows are deleted children first and the user row last: a job that is writing this user holds
    row locks the deletion waits for, and a job that starts after the user row is gone finds no
    user (foreign keys, and the existence checks of the job families) and skips. A deadlock with
    such a job is retried; the whole deletion is idempotent.
    """
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        try:
            counts = _delete_rows(db, user_id)
            break
        except OperationalError as exc:
            db.rollback()
            if attempt == DELETE_ATTEMPTS or getattr(exc.orig, "pgcode", None) != "40P01":
                raise
            log.warning("account deletion of %s hit a deadlock, attempt %d, retrying", user_id, attempt)
    keys = clear_user_keys(client, user_id)
    log.info("account deleted user=%s rows=%s redis_keys=%d", user_id, counts, keys)
    return counts


def _delete_rows(db: Session, user_id: str) -> dict[str, int]:
    """Linked tables, then the user row (which blocks new writers of the user), then unlinked ones."""
    linked, unlinked = user_tables()
    counts: dict[str, int] = {}

    def delete_from(table: Table) -> None:
        deleted = db.execute(delete(table).where(table.c.user_id == user_id)).rowcount
        if deleted:
            counts[table.name] = deleted

    # Profile attributes (seed 003) are keyed by entity: the entity row first, the order in which a
    # consolidation locks it, so one in flight finishes first and a later one finds nothing to update.
    for model in (ProfileEntity, ProfileAttribute):
        deleted = db.execute(
            delete(model).where(model.entity_type == "user", model.entity_id == user_id)
        ).rowcount
        if deleted:
            counts[model.__tablename__] = deleted
    for table in linked:
        delete_from(table)
    counts["users"] = db.execute(delete(User).where(User.id == user_id)).rowcount
    for table in unlinked:
        delete_from(table)
    db.commit()
    return counts


def clear_user_keys(client: redis.Redis, user_id: str) -> int:
    """The user's flag, profile cache and brief caches (focus:*:{user_id}, brief:{user_id}:*)."""
    exact = [cache.update_flag_key(user_id), cache.profile_cache_key(user_id)]
    try:
        intelligence.invalidate_user_cache(client, user_id)
        keys = exact + list(client.scan_iter(match=f"brief:{_glob_escape(user_id)}:*", count=1000))
        return client.delete(*keys)
    except redis.RedisError as exc:
        # Every key has a TTL and the rows are gone, so nothing can be served from them for long.
        log.warning("redis unavailable, keys of deleted user %s left to expire: %s", user_id, exc)
        return 0


def _glob_escape(value: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in value)


# ---------------------------------------------------------------- dashboard data


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
