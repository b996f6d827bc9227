"""Chat messages, analysis jobs and the profile interpretations they produce (seed 002)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_at_column

JOB_PRIORITIES = ("high", "medium", "low")
# deferred: over a budget, waits until next_attempt_at; cancelled: by an operator while pending.
JOB_STATUSES = ("pending", "processing", "completed", "failed", "deferred", "cancelled")
# A job in one of these holds its user and context: no second job opens beside it.
OPEN_STATUSES = ("pending", "processing", "deferred")
JOB_SOURCES = ("chat", "view", "manual")
JOB_OUTCOMES = ("analysed", "insufficient_data")


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        CheckConstraint("length(context_type) > 0", name="context_type_not_empty"),
        Index("ix_chat_messages_user_id_context_type_created_at", "user_id", "context_type", "created_at"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    context_type: Mapped[str] = mapped_column(String(50), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    off_the_record: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    created_at: Mapped[datetime] = created_at_column()


class AnalysisJob(Base):
    """One analysis of a user's context. PostgreSQL holds its state; the broker only carries its id.

    The partial unique index allows one open (pending, processing or deferred) job per user and
    context, so two concurrent triggers can never both create one. `next_attempt_at` is when its
    message should be consumed: a pending job well past it lost its message and is published
    again; a deferred job is picked up again by the sweeper then. `waiting_for` says why a job is
    waiting (the shared model limit, a provider's back-off, the user's daily budget); `waits`
    counts its waits, none of which used up an attempt.
    """

    __tablename__ = "analysis_jobs"
    __table_args__ = (
        CheckConstraint("priority IN ('high', 'medium', 'low')", name="priority_known"),
        CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed', 'deferred', 'cancelled')",
            name="status_known",
        ),
        CheckConstraint("source IN ('chat', 'view', 'manual')", name="source_known"),
        CheckConstraint("outcome IN ('analysed', 'insufficient_data')", name="outcome_known"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index(
            "uq_analysis_jobs_one_open_per_user_context",
            "user_id",
            "context_type",
            unique=True,
            postgresql_where=text("status IN ('pending', 'processing', 'deferred')"),
        ),
        Index("ix_analysis_jobs_user_id_context_type_created_at", "user_id", "context_type", "created_at"),
        Index("ix_analysis_jobs_status_created_at", "status", "created_at"),
        Index(
            "ix_analysis_jobs_open_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'processing', 'deferred')"),
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    context_type: Mapped[str] = mapped_column(String(50), nullable=False)
    priority: Mapped[str] = mapped_column(String(10), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    source: Mapped[str] = mapped_column(String(10), nullable=False)
    outcome: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    waiting_for: Mapped[str | None] = mapped_column(Text)
    waits: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    analyser: Mapped[str | None] = mapped_column(String(100))
    messages_analyzed: Mapped[int | None] = mapped_column(Integer)
    tokens_in: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    tokens_out: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), nullable=False, server_default="0")
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProfileInterpretation(Base):
    """The latest interpretation of one user's context; replaced whole by each analysis."""

    __tablename__ = "profile_interpretations"
    __table_args__ = (
        UniqueConstraint("user_id", "context_type"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    context_type: Mapped[str] = mapped_column(String(50), nullable=False)
    interpretation: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    confidence: Mapped[Decimal] = mapped_column(Numeric(4, 3), nullable=False)
    messages_analyzed: Mapped[int] = mapped_column(Integer, nullable=False)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("analysis_jobs.id", ondelete="SET NULL"), nullable=True
    )
    analyzed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
