"""Profile attributes (seed 003) and their consolidation state."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, created_at_column

ENTITY_TYPES = ("user", "bot")
CATEGORIES = ("preference", "fact", "interest", "communication", "health", "misc")


class ProfileAttribute(Base):
    """One thing known about a user or bot; one row per (entity, category, key)."""

    __tablename__ = "profile_attributes"
    __table_args__ = (
        CheckConstraint("entity_type IN ('user', 'bot')", name="entity_type_known"),
        CheckConstraint(
            "category IN ('preference', 'fact', 'interest', 'communication', 'health', 'misc')",
            name="category_known",
        ),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        CheckConstraint("length(key) > 0 AND length(value) > 0", name="not_empty"),
        UniqueConstraint("entity_id", "entity_type", "category", "key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    entity_id: Mapped[str] = mapped_column(String(128), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(10), nullable=False)
    category: Mapped[str] = mapped_column(String(20), nullable=False)
    key: Mapped[str] = mapped_column(String(100), nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    source: Mapped[str] = mapped_column(String(50), nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    # When the information was last stated: "most recent" in conflict resolution.
    updated_at: Mapped[datetime] = created_at_column()


class ProfileEntity(Base):
    """Consolidation state of one entity.

    `attributes_version` is bumped in the same transaction as every attribute change by a user or
    service; `consolidated_version` is the version the last consolidation saw. They differ exactly
    when the entity needs consolidating, which makes discovery one indexed query.
    """

    __tablename__ = "profile_entities"
    __table_args__ = (
        CheckConstraint("entity_type IN ('user', 'bot')", name="entity_type_known"),
        Index(
            "ix_profile_entities_outdated",
            "entity_id",
            "entity_type",
            postgresql_where=text("attributes_version <> consolidated_version"),
        ),
    )

    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    attributes_version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    consolidated_version: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    last_consolidated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
