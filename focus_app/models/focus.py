"""Users, tasks, focus sessions and the computed focus profiles (seed 001)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_at_column

DEFAULT_TIMEZONE = "UTC"


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))


class User(Base):
    """A user, created on first authenticated request; id is the JWT `sub`.

    `sessions_version` is bumped in the same transaction as every change to the user's sessions;
    `profiled_version` is the version the last profile computation saw. They differ exactly when
    the profile is out of date, which makes PostgreSQL (not the Redis flag) the source of truth.

    `brief_week` is the latest week whose weekly brief a tick planned for the user, `brief_due_at`
    when their next week comes due (Monday 02:00 in their timezone); NULL means "work it out at the
    next tick" (a new user, a new timezone or new brief preferences).
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("length(id) > 0", name="id_not_empty"),
        Index(
            "ix_users_profile_outdated",
            "id",
            postgresql_where=text("sessions_version <> profiled_version"),
        ),
        # The tick's due users: `brief_due_at <= now` or NULL, both one range of this index.
        Index("ix_users_brief_due_at", "brief_due_at"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, server_default=DEFAULT_TIMEZONE)
    sessions_version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    profiled_version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    brief_week: Mapped[date | None] = mapped_column(Date)
    brief_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()


class Task(Base):
    """What a focus session is about."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    course: Mapped[str | None] = mapped_column(String(100))
    task_type: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = created_at_column()


class FocusSession(Base):
    __tablename__ = "focus_sessions"
    __table_args__ = (
        CheckConstraint("focus_score >= 1 AND focus_score <= 5", name="focus_score_range"),
        CheckConstraint("duration_minutes >= 0", name="duration_non_negative"),
        CheckConstraint("expected_duration > 0", name="expected_duration_positive"),
        CheckConstraint("cycles_completed >= 0", name="cycles_non_negative"),
        CheckConstraint("break_minutes >= 0", name="break_non_negative"),
        CheckConstraint("interruption_count >= 0", name="interruptions_non_negative"),
        CheckConstraint("end_time IS NULL OR end_time >= start_time", name="ends_after_start"),
        Index("ix_focus_sessions_user_id_start_time", "user_id", "start_time"),
        Index("ix_focus_sessions_end_time", "end_time"),
        Index("ix_focus_sessions_task_id", "task_id"),
        # One active session per user, enforced by PostgreSQL even under concurrent starts.
        Index(
            "uq_focus_sessions_one_active_per_user",
            "user_id",
            unique=True,
            postgresql_where=text("end_time IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True
    )
    start_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    actual_start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    actual_end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    expected_duration: Mapped[int | None] = mapped_column(Integer)
    session_type: Mapped[str] = mapped_column(Text, nullable=False, server_default="pomodoro")
    cycles_completed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    break_minutes: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    was_completed: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    context: Mapped[str | None] = mapped_column(Text)
    focus_score: Mapped[int | None] = mapped_column(Integer)
    interruption_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    focus_quality: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    session_notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class UserFocusProfile(Base):
    """Aggregated analytics per user; written only by the set-based batch computation."""

    __tablename__ = "user_focus_profiles"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    avg_focus_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    avg_break_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    avg_interruption_count: Mapped[Decimal | None] = mapped_column(Numeric(4, 2))
    avg_completion_ratio: Mapped[Decimal | None] = mapped_column(Numeric(4, 2))
    avg_underestimation_pct: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    peak_focus_hours: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    peak_focus_days: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    total_sessions_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completed_sessions_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    focus_by_hour: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    performance_by_course: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    last_computed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    sessions_analyzed_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    source_version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
