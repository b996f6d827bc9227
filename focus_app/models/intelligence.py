"""Weekly intelligence (seed 004): preferences, the briefs, and the per-user retry queue."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_at_column

RETRY_STATUSES = ("pending", "exhausted")


class UserPreference(Base):
    """Per-user switches; a user without a row has weekly generation on (the seed's defaults)."""

    __tablename__ = "user_preferences"
    __table_args__ = (
        CheckConstraint(
            "intelligence_generation_frequency IN ('weekly')", name="intelligence_frequency_known"
        ),
    )

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    intelligence_generation_enabled: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default="true"
    )
    intelligence_generation_frequency: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default="weekly"
    )
    last_intelligence_generated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    intelligence_notification_enabled: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default="true"
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class WeeklyBrief(Base):
    """One user's brief for one ISO week (week_of = that Monday, in the user's timezone)."""

    __tablename__ = "weekly_briefs"
    __table_args__ = (
        UniqueConstraint("user_id", "week_of"),
        CheckConstraint("extract(isodow from week_of) = 1", name="week_of_is_monday"),
        CheckConstraint("story_source IN ('deterministic', 'llm')", name="story_source_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    week_of: Mapped[date] = mapped_column(Date, nullable=False)
    week_stats: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    main_story: Mapped[str] = mapped_column(Text, nullable=False)
    insights: Mapped[list[Any]] = mapped_column(JSONB, nullable=False)
    patterns: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    velocity: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    story_source: Mapped[str] = mapped_column(String(20), nullable=False, server_default="deterministic")
    generated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    created_at: Mapped[datetime] = created_at_column()


class JobRetryQueue(Base):
    """A user whose generation failed verification, retried with backoff up to max_retries."""

    __tablename__ = "job_retry_queue"
    __table_args__ = (
        UniqueConstraint("job_name", "user_id"),
        CheckConstraint("status IN ('pending', 'exhausted')", name="status_known"),
        Index("ix_job_retry_queue_due", "next_retry_at", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    job_name: Mapped[str] = mapped_column(String(100), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    week_of: Mapped[date] = mapped_column(Date, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    retry_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    max_retries: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_retry_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
