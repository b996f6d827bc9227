"""operator control: deferred and cancelled analysis jobs, cancelled runs and units

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-26 16:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_SETS = {
    "analysis_jobs": (
        "('pending', 'processing', 'completed', 'failed')",
        "('pending', 'processing', 'completed', 'failed', 'deferred', 'cancelled')",
    ),
    "job_runs": (
        "('pending', 'running', 'success', 'failed', 'skipped')",
        "('pending', 'running', 'success', 'failed', 'skipped', 'cancelled')",
    ),
    "job_run_units": ("('pending', 'done', 'failed')", "('pending', 'done', 'failed', 'cancelled')"),
}


def _replace(table: str, statuses: str) -> None:
    name = f"ck_{table}_status_known"
    op.drop_constraint(op.f(name), table, type_="check")
    op.create_check_constraint(op.f(name), table, f"status IN {statuses}")


def upgrade() -> None:
    for table, (_, new) in STATUS_SETS.items():
        _replace(table, new)


def downgrade() -> None:
    for table, (old, _) in STATUS_SETS.items():
        _replace(table, old)
