"""Download everything stored about a user (seed 001 "Data Retention").

Exports stream from a server-side cursor, so their memory does not grow with the number of
sessions.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from focus_app.models import FocusSession, Task, UserFocusProfile
from focus_app.models.analysis import AnalysisJob, ChatMessage, ProfileInterpretation
from focus_app.models.attributes import ProfileAttribute
from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.account.settings import account_settings

EXPORT_BATCH_ROWS = 1000
# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

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
