"""Execution history of every periodic or manual job (`job_runs`, its units) and their switches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_at_column

# cancelled: stopped by an operator; its units still pending are cancelled with it.
RUN_STATUSES = ("pending", "running", "success", "failed", "skipped", "cancelled")
RUN_TRIGGERS = ("beat", "manual", "api")
UNIT_STATUSES = ("pending", "done", "failed", "cancelled")


class JobRun(Base):
    """One execution of a job. `slot` is unique per job, so a periodic slot runs once."""

    __tablename__ = "job_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'running', 'success', 'failed', 'skipped', 'cancelled')",
            name="status_known",
        ),
        CheckConstraint("trigger IN ('beat', 'manual', 'api')", name="trigger_known"),
        UniqueConstraint("job_name", "slot"),
        UniqueConstraint("task_id"),
        Index("ix_job_runs_job_name_started_at", "job_name", "started_at"),
        Index("ix_job_runs_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    job_name: Mapped[str] = mapped_column(String(100), nullable=False)
    trigger: Mapped[str] = mapped_column(String(20), nullable=False)
    slot: Mapped[str | None] = mapped_column(String(64))
    scope: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="running")
    started_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    units_total: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    units_done: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    succeeded: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)


class JobRunUnit(Base):
    """A batch of a run, written before its message is published and claimed exactly once.

    PostgreSQL first, broker second: a lost message leaves a pending unit that is published again.
    """

    __tablename__ = "job_run_units"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done', 'failed', 'cancelled')", name="status_known"),
        Index("ix_job_run_units_pending", "created_at", postgresql_where=text("status = 'pending'")),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"), primary_key=True)
    unit_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    payload: Mapped[list[Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobSetting(Base):
    """Run-time switch of a periodic job (seed 003's `enabled`); no row means enabled."""

    __tablename__ = "job_settings"

    job_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    updated_at: Mapped[datetime] = created_at_column()
