"""Model usage per UTC day and job family: what operators would miss if Redis were flushed."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Date, DateTime, Integer, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

# The job families whose model calls are counted (services/jobkit/llm_flow.py).
LLM_FAMILIES = ("analysis", "consolidation", "brief")


class LLMUsageDaily(Base):
    """One row per day and family, added to by every model call (one upsert, its own statement)."""

    __tablename__ = "llm_usage_daily"
    __table_args__ = (
        CheckConstraint("family IN ('analysis', 'consolidation', 'brief')", name="family_known"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    family: Mapped[str] = mapped_column(String(20), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    tokens_in: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    tokens_out: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), nullable=False, server_default="0")
    # Calls that had to wait for the shared limit or a provider's back-off (once per call).
    waits: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Provider answers 429 / 503 / 529 (rate limited, overloaded).
    backoffs: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Calls refused by a user's daily budget (their analysis job was deferred).
    deferrals: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
