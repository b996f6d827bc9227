"""LLM flow control: why an analysis job waits, deferred jobs hold their context, usage per day

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A deferred job (over the user's daily budget) still holds its user and context, and the sweeper
# finds it by next_attempt_at.
PARTIAL_INDEXES = {
    "uq_analysis_jobs_one_open_per_user_context": (["user_id", "context_type"], True),
    "ix_analysis_jobs_open_next_attempt_at": (["next_attempt_at"], False),
}
OPEN_BEFORE = "status IN ('pending', 'processing')"
OPEN_AFTER = "status IN ('pending', 'processing', 'deferred')"


def _index(name: str, where: str) -> None:
    columns, unique = PARTIAL_INDEXES[name]
    op.drop_index(name, table_name="analysis_jobs")
    op.create_index(name, "analysis_jobs", columns, unique=unique, postgresql_where=sa.text(where))


def upgrade() -> None:
    op.add_column("analysis_jobs", sa.Column("waiting_for", sa.Text(), nullable=True))
    op.add_column("analysis_jobs", sa.Column("waits", sa.Integer(), server_default="0", nullable=False))
    for name in PARTIAL_INDEXES:
        _index(name, OPEN_AFTER)
    op.create_table(
        "llm_usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("family", sa.String(length=20), nullable=False),
        sa.Column("calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=14, scale=6), server_default="0", nullable=False),
        sa.Column("waits", sa.Integer(), server_default="0", nullable=False),
        sa.Column("backoffs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("deferrals", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "family IN ('analysis', 'consolidation', 'brief')", name=op.f("ck_llm_usage_daily_family_known")
        ),
        sa.PrimaryKeyConstraint("day", "family", name=op.f("pk_llm_usage_daily")),
    )


def downgrade() -> None:
    op.drop_table("llm_usage_daily")
    # Deferred jobs go back to pending (the old schema has no deferral): the sweeper publishes them.
    op.execute("UPDATE analysis_jobs SET status = 'pending' WHERE status = 'deferred'")
    for name in PARTIAL_INDEXES:
        _index(name, OPEN_BEFORE)
    op.drop_column("analysis_jobs", "waits")
    op.drop_column("analysis_jobs", "waiting_for")
