"""The users table's rows are created on first use: the id is the token's `sub`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models import User

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
