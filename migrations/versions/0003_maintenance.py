"""maintenance: profile attributes, consolidation state, job switches

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 07:25:30.075495
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_settings",
        sa.Column("job_name", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("job_name", name=op.f("pk_job_settings")),
    )
    op.create_table(
        "profile_attributes",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("entity_id", sa.String(length=128), nullable=False),
        sa.Column("entity_type", sa.String(length=10), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "category IN ('preference', 'fact', 'interest', 'communication', 'health', 'misc')",
            name=op.f("ck_profile_attributes_category_known"),
        ),
        sa.CheckConstraint(
            "entity_type IN ('user', 'bot')", name=op.f("ck_profile_attributes_entity_type_known")
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_profile_attributes_confidence_range")
        ),
        sa.CheckConstraint(
            "length(key) > 0 AND length(value) > 0", name=op.f("ck_profile_attributes_not_empty")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_attributes")),
        sa.UniqueConstraint(
            "entity_id",
            "entity_type",
            "category",
            "key",
            name=op.f("uq_profile_attributes_entity_id_entity_type_category_key"),
        ),
    )
    op.create_table(
        "profile_entities",
        sa.Column("entity_id", sa.String(length=128), nullable=False),
        sa.Column("entity_type", sa.String(length=10), nullable=False),
        sa.Column("attributes_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("consolidated_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_consolidated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "entity_type IN ('user', 'bot')", name=op.f("ck_profile_entities_entity_type_known")
        ),
        sa.PrimaryKeyConstraint("entity_id", "entity_type", name=op.f("pk_profile_entities")),
    )
    op.create_index(
        "ix_profile_entities_outdated",
        "profile_entities",
        ["entity_id", "entity_type"],
        unique=False,
        postgresql_where=sa.text("attributes_version <> consolidated_version"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_profile_entities_outdated",
        table_name="profile_entities",
        postgresql_where=sa.text("attributes_version <> consolidated_version"),
    )
    op.drop_table("profile_entities")
    op.drop_table("profile_attributes")
    op.drop_table("job_settings")
