"""Poison messages parked after too many deliveries (the task dead-letter table)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_at_column


class ParkedTask(Base):
    """A message that was delivered more than TASK_MAX_DELIVERIES times without finishing.

    Kept with its arguments so an operator can read it and replay it (`ops.replay_parked`).
    """

    __tablename__ = "parked_tasks"
    __table_args__ = (
        Index("ix_parked_tasks_open", "parked_at", postgresql_where=text("replayed_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    task_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    task_name: Mapped[str] = mapped_column(String(200), nullable=False)
    args: Mapped[list[Any]] = mapped_column(JSONB, nullable=False)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    queue: Mapped[str | None] = mapped_column(String(100))
    deliveries: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    parked_at: Mapped[datetime] = created_at_column()
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replay_task_id: Mapped[str | None] = mapped_column(String(64))
