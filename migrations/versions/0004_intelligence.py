"""intelligence: preferences, weekly briefs, retry queue

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-23 07:25:55.708058
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_retry_queue",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("job_name", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("week_of", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'exhausted')", name=op.f("ck_job_retry_queue_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_retry_queue")),
        sa.UniqueConstraint("job_name", "user_id", name=op.f("uq_job_retry_queue_job_name_user_id")),
    )
    op.create_index(
        "ix_job_retry_queue_due",
        "job_retry_queue",
        ["next_retry_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "user_preferences",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("intelligence_generation_enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "intelligence_generation_frequency", sa.String(length=20), server_default="weekly", nullable=False
        ),
        sa.Column("last_intelligence_generated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("intelligence_notification_enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "intelligence_generation_frequency IN ('weekly')",
            name=op.f("ck_user_preferences_intelligence_frequency_known"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_preferences_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_preferences")),
    )
    op.create_table(
        "weekly_briefs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("week_of", sa.Date(), nullable=False),
        sa.Column("week_stats", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("main_story", sa.Text(), nullable=False),
        sa.Column("insights", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("patterns", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("velocity", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("story_source", sa.String(length=20), server_default="deterministic", nullable=False),
        sa.Column(
            "generated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "story_source IN ('deterministic', 'llm')", name=op.f("ck_weekly_briefs_story_source_known")
        ),
        sa.CheckConstraint(
            "extract(isodow from week_of) = 1", name=op.f("ck_weekly_briefs_week_of_is_monday")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_weekly_briefs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weekly_briefs")),
        sa.UniqueConstraint("user_id", "week_of", name=op.f("uq_weekly_briefs_user_id_week_of")),
    )


def downgrade() -> None:
    op.drop_table("weekly_briefs")
    op.drop_table("user_preferences")
    op.drop_index(
        "ix_job_retry_queue_due", table_name="job_retry_queue", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("job_retry_queue")
