"""The users table's rows are created on first use: the id is the token's `sub`."""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models import User

MAX_USER_ID_LENGTH = 128
# Control characters (NUL, newline...), lone surrogates, line and paragraph separators: PostgreSQL
# cannot store the first two, and a newline in an id would forge a line in a text log.
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def user_id_problem(value: object) -> str | None:
    """Why `value` cannot be a user id (None when it can): the token's `sub`, a task argument or
    an admin's list of users all follow this one rule."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_USER_ID_LENGTH:
        return f"must be a string of 1 to {MAX_USER_ID_LENGTH} characters"
    if any(unicodedata.category(char) in REFUSED_CATEGORIES for char in value):
        return "must not contain control characters, line breaks or lone surrogates"
    if value.strip() != value or not value.strip():
        return "must not be blank or start or end with whitespace"
    return None


# The caller's user row, created by the statement that first needs it (id = the token's `sub`).
NEW_USER_CTE = """new_user AS (
    INSERT INTO users (id, timezone) VALUES (:user_id, :timezone) ON CONFLICT (id) DO NOTHING
)"""


def ensure_user(db: Session, user_id: str, timezone: str | None = None) -> None:
    """Create the user on first use (id = the token's `sub`); one indexed read afterwards."""
    if db.scalar(select(User.id).where(User.id == user_id)) is not None:
        return
    values: dict[str, Any] = {"id": user_id}
    if timezone:
        values["timezone"] = timezone
    db.execute(pg_insert(User).values(**values).on_conflict_do_nothing(index_elements=["id"]))
    db.commit()
