"""brief schedule: each user's latest planned week and when the next one comes due

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("brief_week", sa.Date(), nullable=True))
    op.add_column("users", sa.Column("brief_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_users_brief_due_at", "users", ["brief_due_at"], unique=False)
    # Users who already have briefs continue after their latest one; brief_due_at stays NULL, so
    # the first tick works out every user's next due time in their own timezone.
    op.execute(
        "UPDATE users u SET brief_week = b.latest "
        "FROM (SELECT user_id, max(week_of) AS latest FROM weekly_briefs GROUP BY user_id) b "
        "WHERE b.user_id = u.id"
    )


def downgrade() -> None:
    op.drop_index("ix_users_brief_due_at", table_name="users")
    op.drop_column("users", "brief_due_at")
    op.drop_column("users", "brief_week")
