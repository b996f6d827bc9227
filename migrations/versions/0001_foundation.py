"""foundation: users, tasks, focus sessions, profiles, job runs

Revision ID: 0001
Revises:
Create Date: 2026-11-23 07:12:36.559413
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("job_name", sa.String(length=100), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("slot", sa.String(length=64), nullable=True),
        sa.Column("scope", sa.String(length=200), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="running", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("units_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("units_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("succeeded", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'success', 'failed', 'skipped')",
            name=op.f("ck_job_runs_status_known"),
        ),
        sa.CheckConstraint("trigger IN ('beat', 'manual', 'api')", name=op.f("ck_job_runs_trigger_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("job_name", "slot", name=op.f("uq_job_runs_job_name_slot")),
        sa.UniqueConstraint("task_id", name=op.f("uq_job_runs_task_id")),
    )
    op.create_index("ix_job_runs_job_name_started_at", "job_runs", ["job_name", "started_at"], unique=False)
    op.create_index("ix_job_runs_status", "job_runs", ["status"], unique=False)
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("sessions_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("profiled_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("length(id) > 0", name=op.f("ck_users_id_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(
        "ix_users_profile_outdated",
        "users",
        ["id"],
        unique=False,
        postgresql_where=sa.text("sessions_version <> profiled_version"),
    )
    op.create_table(
        "job_run_units",
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("unit_no", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed')", name=op.f("ck_job_run_units_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["job_runs.id"], name=op.f("fk_job_run_units_run_id_job_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "unit_no", name=op.f("pk_job_run_units")),
    )
    op.create_index(
        "ix_job_run_units_pending",
        "job_run_units",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("course", sa.String(length=100), nullable=True),
        sa.Column("task_type", sa.String(length=50), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_tasks_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_user_id_created_at", "tasks", ["user_id", "created_at"], unique=False)
    op.create_table(
        "user_focus_profiles",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("avg_focus_duration_minutes", sa.Integer(), nullable=True),
        sa.Column("avg_break_duration_minutes", sa.Integer(), nullable=True),
        sa.Column("avg_interruption_count", sa.Numeric(precision=4, scale=2), nullable=True),
        sa.Column("avg_completion_ratio", sa.Numeric(precision=4, scale=2), nullable=True),
        sa.Column("avg_underestimation_pct", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column("peak_focus_hours", postgresql.ARRAY(sa.Integer()), nullable=True),
        sa.Column("peak_focus_days", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("total_sessions_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed_sessions_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "focus_by_hour",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "performance_by_course",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "last_computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("sessions_analyzed_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("source_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_focus_profiles_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_focus_profiles")),
        sa.UniqueConstraint("user_id", name=op.f("uq_user_focus_profiles_user_id")),
    )
    op.create_table(
        "focus_sessions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actual_start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actual_end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_minutes", sa.Integer(), nullable=True),
        sa.Column("expected_duration", sa.Integer(), nullable=True),
        sa.Column("session_type", sa.Text(), server_default="pomodoro", nullable=False),
        sa.Column("cycles_completed", sa.Integer(), server_default="1", nullable=False),
        sa.Column("break_minutes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("was_completed", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("focus_score", sa.Integer(), nullable=True),
        sa.Column("interruption_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "focus_quality",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("session_notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("break_minutes >= 0", name=op.f("ck_focus_sessions_break_non_negative")),
        sa.CheckConstraint("cycles_completed >= 0", name=op.f("ck_focus_sessions_cycles_non_negative")),
        sa.CheckConstraint("duration_minutes >= 0", name=op.f("ck_focus_sessions_duration_non_negative")),
        sa.CheckConstraint(
            "end_time IS NULL OR end_time >= start_time", name=op.f("ck_focus_sessions_ends_after_start")
        ),
        sa.CheckConstraint(
            "expected_duration > 0", name=op.f("ck_focus_sessions_expected_duration_positive")
        ),
        sa.CheckConstraint(
            "focus_score >= 1 AND focus_score <= 5", name=op.f("ck_focus_sessions_focus_score_range")
        ),
        sa.CheckConstraint(
            "interruption_count >= 0", name=op.f("ck_focus_sessions_interruptions_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_focus_sessions_task_id_tasks"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_focus_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_focus_sessions")),
    )
    op.create_index("ix_focus_sessions_end_time", "focus_sessions", ["end_time"], unique=False)
    op.create_index("ix_focus_sessions_task_id", "focus_sessions", ["task_id"], unique=False)
    op.create_index(
        "ix_focus_sessions_user_id_start_time", "focus_sessions", ["user_id", "start_time"], unique=False
    )
    op.create_index(
        "uq_focus_sessions_one_active_per_user",
        "focus_sessions",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("end_time IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_focus_sessions_one_active_per_user",
        table_name="focus_sessions",
        postgresql_where=sa.text("end_time IS NULL"),
    )
    op.drop_index("ix_focus_sessions_user_id_start_time", table_name="focus_sessions")
    op.drop_index("ix_focus_sessions_task_id", table_name="focus_sessions")
    op.drop_index("ix_focus_sessions_end_time", table_name="focus_sessions")
    op.drop_table("focus_sessions")
    op.drop_table("user_focus_profiles")
    op.drop_index("ix_tasks_user_id_created_at", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index(
        "ix_job_run_units_pending", table_name="job_run_units", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("job_run_units")
    op.drop_index(
        "ix_users_profile_outdated",
        table_name="users",
        postgresql_where=sa.text("sessions_version <> profiled_version"),
    )
    op.drop_table("users")
    op.drop_index("ix_job_runs_status", table_name="job_runs")
    op.drop_index("ix_job_runs_job_name_started_at", table_name="job_runs")
    op.drop_table("job_runs")
