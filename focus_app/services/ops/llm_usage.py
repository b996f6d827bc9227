"""Model usage for operators (/ops, /metrics): the day's figures per family from PostgreSQL, the
shared limiter as it stands from Redis, and the analysis jobs waiting for a turn or deferred."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from focus_app.models.analysis import AnalysisJob
from focus_app.models.llm import LLMUsageDaily
from focus_app.services.jobkit.llm_flow import Limits, WindowState, window_state

log = logging.getLogger(__name__)

USAGE_FIGURES = ("calls", "tokens_in", "tokens_out", "cost_usd", "waits", "backoffs", "deferrals")


@dataclass(frozen=True)
class WaitingJobs:
    waiting: int  # pending, handed back until their turn under the limit or a back-off
    deferred: int  # over their user's daily budget until the next UTC day


def usage_rows(db: Session, since: date) -> list[dict[str, Any]]:
    """Per day (newest first) and family."""
    rows = db.scalars(
        select(LLMUsageDaily)
        .where(LLMUsageDaily.day >= since)
        .order_by(LLMUsageDaily.day.desc(), LLMUsageDaily.family)
    ).all()
    return [
        {"day": row.day, "family": row.family, **{name: getattr(row, name) for name in USAGE_FIGURES}}
        for row in rows
    ]


def usage_totals(db: Session) -> dict[str, dict[str, Any]]:
    """Every figure summed over all days, per family (the metrics' counters)."""
    columns = [func.sum(getattr(LLMUsageDaily, name)) for name in USAGE_FIGURES]
    totals = db.execute(select(LLMUsageDaily.family, *columns).group_by(LLMUsageDaily.family)).all()
    return {family: dict(zip(USAGE_FIGURES, values, strict=True)) for family, *values in totals}


def waiting_jobs(db: Session) -> WaitingJobs:
    waiting, deferred = db.execute(
        select(
            func.count().filter(AnalysisJob.status == "pending", AnalysisJob.waiting_for.is_not(None)),
            func.count().filter(AnalysisJob.status == "deferred"),
        )
    ).one()
    return WaitingJobs(waiting, deferred)


def overview(db: Session, client: redis.Redis, limits: Limits, days: int) -> dict[str, Any]:
    """What the operator page shows; Redis down leaves the live part out with a warning."""
    today = datetime.now(UTC).date()
    rows = usage_rows(db, today - timedelta(days=days - 1))
    jobs = waiting_jobs(db)
    db.rollback()
    warnings: list[str] = []
    state: WindowState | None
    try:
        state = window_state(client)
    except redis.RedisError as exc:
        log.warning("llm usage: redis unavailable: %s", exc)
        state = None
        warnings.append("Redis is unavailable: the live limiter figures are missing.")
    return {
        "generated_at": datetime.now(UTC),
        "limits": {
            "tokens_per_minute": limits.tokens_per_window,
            "requests_per_minute": limits.requests_per_window,
            "user_daily_tokens": limits.user_daily_tokens,
            "window_seconds": limits.window_seconds,
        },
        "window": None if state is None else asdict(state),
        "analysis_jobs": asdict(jobs),
        "days": rows,
        "warnings": warnings,
    }
