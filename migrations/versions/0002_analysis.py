"""analysis jobs, chat messages, profile interpretations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 07:25:52.418809
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analysis_jobs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("context_type", sa.String(length=50), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("celery_task_id", sa.String(length=64), nullable=True),
        sa.Column("analyser", sa.String(length=100), nullable=True),
        sa.Column("messages_analyzed", sa.Integer(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tokens_out", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=12, scale=6), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('analysed', 'insufficient_data')", name=op.f("ck_analysis_jobs_outcome_known")
        ),
        sa.CheckConstraint(
            "priority IN ('high', 'medium', 'low')", name=op.f("ck_analysis_jobs_priority_known")
        ),
        sa.CheckConstraint(
            "source IN ('chat', 'view', 'manual')", name=op.f("ck_analysis_jobs_source_known")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed')",
            name=op.f("ck_analysis_jobs_status_known"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_analysis_jobs_attempts_non_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_analysis_jobs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_jobs")),
    )
    op.create_index(
        "ix_analysis_jobs_open_next_attempt_at",
        "analysis_jobs",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.create_index(
        "ix_analysis_jobs_status_created_at", "analysis_jobs", ["status", "created_at"], unique=False
    )
    op.create_index(
        "ix_analysis_jobs_user_id_context_type_created_at",
        "analysis_jobs",
        ["user_id", "context_type", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_analysis_jobs_one_open_per_user_context",
        "analysis_jobs",
        ["user_id", "context_type"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("context_type", sa.String(length=50), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("off_the_record", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("length(context_type) > 0", name=op.f("ck_chat_messages_context_type_not_empty")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_chat_messages_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    op.create_index(
        "ix_chat_messages_user_id_context_type_created_at",
        "chat_messages",
        ["user_id", "context_type", "created_at"],
        unique=False,
    )
    op.create_table(
        "profile_interpretations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("context_type", sa.String(length=50), nullable=False),
        sa.Column("interpretation", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("confidence", sa.Numeric(precision=4, scale=3), nullable=False),
        sa.Column("messages_analyzed", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("analyzed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_profile_interpretations_confidence_range")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["analysis_jobs.id"],
            name=op.f("fk_profile_interpretations_job_id_analysis_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_profile_interpretations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_interpretations")),
        sa.UniqueConstraint(
            "user_id", "context_type", name=op.f("uq_profile_interpretations_user_id_context_type")
        ),
    )


def downgrade() -> None:
    op.drop_table("profile_interpretations")
    op.drop_index("ix_chat_messages_user_id_context_type_created_at", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index(
        "uq_analysis_jobs_one_open_per_user_context",
        table_name="analysis_jobs",
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.drop_index("ix_analysis_jobs_user_id_context_type_created_at", table_name="analysis_jobs")
    op.drop_index("ix_analysis_jobs_status_created_at", table_name="analysis_jobs")
    op.drop_index(
        "ix_analysis_jobs_open_next_attempt_at",
        table_name="analysis_jobs",
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.drop_table("analysis_jobs")
