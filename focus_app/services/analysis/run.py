"""One analysis job's run: claim it with a compare-and-set, analyse, and store the interpretation
with the job's completion in one transaction guarded by the attempt it claimed, so duplicate or
late deliveries change nothing. Provider errors are retried with backoff, then the job fails.

Waiting is not failing: a model call whose turn under the shared limit (or a provider's back-off)
is far away hands the job back to pending for that long, and a user over their daily token budget
defers it to the next UTC day; both give the attempt back and say why in `waiting_for`."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.models import User
from focus_app.models.analysis import AnalysisJob, ChatMessage, ProfileInterpretation
from focus_app.services.analysis.analyser import Analyser, Analysis
from focus_app.services.analysis.jobs import Rules
from focus_app.services.jobkit.errors import NotFound
from focus_app.services.jobkit.llm import Budget, LLMError, MalformedOutput, OverBudget, Throttled

log = logging.getLogger("analysis_jobs")


class RetryLater(Exception):  # noqa: N818 (it is a reason, not an error)
    """Why analysis.run is published again (Flower shows it beside the RETRY state)."""


@dataclass(frozen=True)
class RunOutcome:
    status: str  # completed | retry | waiting | deferred | failed | duplicate | lost_claim | skipped
    job_id: uuid.UUID
    retry_in: float | None = None
    detail: str | None = None
    priority: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "job_id": str(self.job_id), "detail": self.detail}


def run_job(
    db: Session,
    job_id: uuid.UUID,
    analyser: Analyser,
    rules: Rules,
    *,
    user_id: str | None = None,
    published_at: datetime | None = None,
) -> RunOutcome:
    """Claim (pending → processing), analyse, store. A duplicate delivery is a no-op.

    `user_id` and `published_at` come from the message (RunMessage, the publish-time stamp): a
    job that is gone because its user deleted the account is skipped; any other unknown id is
    NotFound (a hand-typed id names no user).
    """
    logs.bind(job_id=str(job_id))
    claimed = db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id, AnalysisJob.status == "pending")
        .values(
            status="processing", started_at=func.now(), attempts=AnalysisJob.attempts + 1, waiting_for=None
        )
        .returning(AnalysisJob.user_id, AnalysisJob.context_type, AnalysisJob.attempts)
    ).one_or_none()
    db.commit()
    if claimed is None:
        if db.get(AnalysisJob, job_id) is None:
            if user_id is not None and _account_deleted_since(db, user_id, published_at):
                log.info("analysis job=%s skipped: user %s deleted the account", job_id, user_id)
                return RunOutcome("skipped", job_id, detail="user deleted")
            raise NotFound(f"analysis job {job_id} not found")
        return RunOutcome("duplicate", job_id, detail="job is not pending")
    user_id, context_type, attempt = claimed
    logs.bind(user_id=user_id, context_type=context_type)
    messages = _messages_to_analyse(db, user_id, context_type, rules.max_messages)
    total = _on_record_count(db, user_id, context_type)
    if total < rules.min_messages:
        done = _finish(
            db,
            job_id,
            attempt,
            outcome="insufficient_data",
            messages_analyzed=total,
            error=f"insufficient data: {total} messages, {rules.min_messages} needed",
        )
        return _completed(db, job_id, done, "insufficient_data")
    budget = Budget(user_id, spent_on=lambda day: _tokens_spent_on(db, user_id, day))
    try:
        analysis = analyser.analyse(context_type, messages, budget=budget)
    except OverBudget as exc:
        return _defer(db, job_id, attempt, exc)
    except Throttled as exc:
        return _wait_turn(db, job_id, attempt, exc)
    except MalformedOutput as exc:
        log.warning(
            "analysis job=%s attempt=%d malformed model output: %s raw=%r", job_id, attempt, exc, exc.raw
        )
        return _attempt_failed(db, job_id, attempt, exc, rules)
    except LLMError as exc:
        return _attempt_failed(db, job_id, attempt, exc, rules)
    done = _finish(
        db,
        job_id,
        attempt,
        outcome="analysed",
        messages_analyzed=len(messages),
        error=None,
        analysis=analysis,
    )
    if done:
        db.execute(
            pg_insert(ProfileInterpretation)
            .values(
                user_id=user_id,
                context_type=context_type,
                interpretation=analysis.interpretation,
                confidence=analysis.confidence,
                messages_analyzed=len(messages),
                job_id=job_id,
                analyzed_at=func.now(),
            )
            .on_conflict_do_update(
                index_elements=["user_id", "context_type"],
                set_={
                    "interpretation": analysis.interpretation,
                    "confidence": analysis.confidence,
                    "messages_analyzed": len(messages),
                    "job_id": job_id,
                    "analyzed_at": func.now(),
                },
            )
        )
    return _completed(db, job_id, done, "analysed")


def _account_deleted_since(db: Session, user_id: str, published_at: datetime | None) -> bool:
    """The user row is gone, or was created after the message was published: the account the
    job belonged to was deleted (a still-valid token re-creates an empty row on its next use)."""
    created = db.scalar(select(User.created_at).where(User.id == user_id))
    db.commit()
    return created is None or (published_at is not None and created > published_at)


def _tokens_spent_on(db: Session, user_id: str, day: date) -> int:
    """The model tokens of the user's analyses started on that UTC day (their budget's count,
    when Redis lost it)."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    spent = db.scalar(
        select(func.coalesce(func.sum(AnalysisJob.tokens_in + AnalysisJob.tokens_out), 0)).where(
            AnalysisJob.user_id == user_id,
            AnalysisJob.started_at >= start,
            AnalysisJob.started_at < start + timedelta(days=1),
        )
    )
    return int(spent or 0)


def _messages_to_analyse(db: Session, user_id: str, context_type: str, limit: int) -> list[str]:
    newest = db.scalars(
        select(ChatMessage.content)
        .where(
            ChatMessage.user_id == user_id,
            ChatMessage.context_type == context_type,
            ChatMessage.off_the_record.is_(False),
        )
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(newest))


def _on_record_count(db: Session, user_id: str, context_type: str) -> int:
    return (
        db.scalar(
            select(func.count()).where(
                ChatMessage.user_id == user_id,
                ChatMessage.context_type == context_type,
                ChatMessage.off_the_record.is_(False),
            )
        )
        or 0
    )


def _finish(
    db: Session,
    job_id: uuid.UUID,
    attempt: int,
    *,
    outcome: str,
    messages_analyzed: int,
    error: str | None,
    analysis: Analysis | None = None,
) -> bool:
    """processing → completed, only for the attempt this run claimed (the sweeper may have
    handed the job to another run meanwhile). Not committed: the caller adds the upsert."""
    values: dict[str, Any] = {
        "status": "completed",
        "outcome": outcome,
        "completed_at": func.now(),
        "messages_analyzed": messages_analyzed,
        "error": error,
    }
    if analysis is not None:
        values.update(
            analyser=analysis.analyser,
            tokens_in=AnalysisJob.tokens_in + analysis.tokens_in,
            tokens_out=AnalysisJob.tokens_out + analysis.tokens_out,
            cost_usd=AnalysisJob.cost_usd + analysis.cost_usd,
        )
    row = db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id, AnalysisJob.status == "processing", AnalysisJob.attempts == attempt)
        .values(**values)
        .returning(AnalysisJob.id)
    ).one_or_none()
    return row is not None


def _completed(db: Session, job_id: uuid.UUID, done: bool, outcome: str) -> RunOutcome:
    if not done:
        db.rollback()
        log.warning("analysis job=%s lost its claim (reset by the sweeper); result discarded", job_id)
        return RunOutcome("lost_claim", job_id)
    db.commit()
    job = db.get_one(AnalysisJob, job_id)
    log.info(
        "completed analysis job=%s outcome=%s messages=%s attempts=%d tokens_in=%d tokens_out=%d cost_usd=%s",
        job_id,
        outcome,
        job.messages_analyzed,
        job.attempts,
        job.tokens_in,
        job.tokens_out,
        job.cost_usd,
    )
    return RunOutcome("completed", job_id, detail=outcome)


def backoff_seconds(attempt: int, rules: Rules, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random, capped."""
    step = min(rules.backoff_max_seconds, rules.backoff_seconds * 2 ** (attempt - 1))
    return step / 2 + (rng or random).uniform(0, step / 2)


def _give_back(db: Session, job_id: uuid.UUID, attempt: int, **values: Any) -> Row[Any] | None:
    """The claimed attempt back: the job was never analysed, so the attempt is not used up."""
    db.rollback()
    row = db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id, AnalysisJob.status == "processing", AnalysisJob.attempts == attempt)
        .values(attempts=attempt - 1, started_at=None, waits=AnalysisJob.waits + 1, **values)
        .returning(AnalysisJob.priority)
    ).one_or_none()
    db.commit()
    return row


def _wait_turn(db: Session, job_id: uuid.UUID, attempt: int, exc: Throttled) -> RunOutcome:
    """Pending again until the model call's turn."""
    reason = f"waiting for its turn under {exc.reason}"
    row = _give_back(
        db,
        job_id,
        attempt,
        status="pending",
        next_attempt_at=func.now() + timedelta(seconds=exc.retry_in),
        waiting_for=reason,
    )
    if row is None:
        return RunOutcome("lost_claim", job_id)
    log.info("analysis job=%s %s: back in %.1fs, no attempt used", job_id, reason, exc.retry_in)
    return RunOutcome("waiting", job_id, retry_in=exc.retry_in, detail=reason, priority=row.priority)


def _defer(db: Session, job_id: uuid.UUID, attempt: int, exc: OverBudget) -> RunOutcome:
    """Over the user's daily budget: deferred to the next day, nothing sent, nothing stored; the
    sweeper publishes it again then."""
    row = _give_back(
        db, job_id, attempt, status="deferred", next_attempt_at=exc.resume_at, waiting_for=str(exc)
    )
    if row is None:
        return RunOutcome("lost_claim", job_id)
    log.warning("analysis job=%s deferred: %s", job_id, exc)
    return RunOutcome("deferred", job_id, detail=str(exc))


def _attempt_failed(db: Session, job_id: uuid.UUID, attempt: int, exc: LLMError, rules: Rules) -> RunOutcome:
    db.rollback()
    error = f"{type(exc).__name__}: {exc}"[:4000]
    spent = exc.completion
    usage = {
        "tokens_in": AnalysisJob.tokens_in + (spent.tokens_in if spent else 0),
        "tokens_out": AnalysisJob.tokens_out + (spent.tokens_out if spent else 0),
        "cost_usd": AnalysisJob.cost_usd + (spent.cost_usd if spent else 0),
    }
    if exc.retryable and attempt < rules.max_attempts:
        delay = backoff_seconds(attempt, rules)
        changed = db.execute(
            update(AnalysisJob)
            .where(
                AnalysisJob.id == job_id, AnalysisJob.status == "processing", AnalysisJob.attempts == attempt
            )
            .values(
                status="pending", error=error, next_attempt_at=func.now() + timedelta(seconds=delay), **usage
            )
            .returning(AnalysisJob.priority)
        ).one_or_none()
        db.commit()
        if changed is None:
            return RunOutcome("lost_claim", job_id)
        log.warning("analysis job=%s attempt=%d failed, retry in %.1fs: %s", job_id, attempt, delay, error)
        return RunOutcome("retry", job_id, retry_in=delay, detail=error, priority=changed.priority)
    failed = db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id, AnalysisJob.status == "processing", AnalysisJob.attempts == attempt)
        .values(status="failed", error=error, completed_at=func.now(), **usage)
        .returning(AnalysisJob.id)
    ).one_or_none()
    db.commit()
    if failed is None:
        return RunOutcome("lost_claim", job_id)
    log.error("analysis job=%s failed after %d attempts: %s", job_id, attempt, error)
    return RunOutcome("failed", job_id, detail=error)
