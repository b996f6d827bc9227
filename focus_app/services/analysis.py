"""Analysis jobs (seed 002): triggers, dedupe, rate limit, the run itself, retries, recovery.

PostgreSQL holds every job; the broker only carries job ids. A trigger decides under a per-user-
and-context advisory lock (and the partial unique index backs it up), so concurrent requests make
at most one open job. A run claims its job with a compare-and-set and stores the interpretation and
the job's completion in one transaction guarded by the attempt it claimed, so duplicate or late
deliveries change nothing. The sweeper turns stuck jobs and jobs whose message was lost back into
published work; failed jobs stay as a dead-letter list until replayed or archived.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from focus_app import logs
from focus_app.models import User
from focus_app.models.analysis import AnalysisJob, ChatMessage, ProfileInterpretation
from focus_app.models.focus import DEFAULT_TIMEZONE
from focus_app.services.analyser import Analyser
from focus_app.services.errors import NotFound
from focus_app.services.focus_sessions import NEW_USER_CTE
from focus_app.services.llm import LLMError, MalformedOutput

log = logging.getLogger("analysis_jobs")

PRIORITY_BY_SOURCE = {"manual": "high", "view": "medium", "chat": "low"}
# Celery priority on the Redis transport: lower number = served first.
CELERY_PRIORITY = {"high": 0, "medium": 3, "low": 6}
OPEN_STATUSES = ("pending", "processing")


@dataclass(frozen=True)
class Rules:
    """The thresholds of seed 002, from settings."""

    chat_trigger_messages: int = 5
    min_messages: int = 10
    max_messages: int = 200
    stale_after_seconds: int = 3600
    rate_limit_seconds: int = 3600
    max_retries: int = 3
    backoff_seconds: float = 10.0
    backoff_max_seconds: float = 600.0
    stuck_after_seconds: int = 300
    republish_after_seconds: int = 120
    archive_after_days: int = 7

    @classmethod
    def from_settings(cls, settings: Any) -> Rules:
        return cls(
            chat_trigger_messages=settings.analysis_chat_trigger_messages,
            min_messages=settings.analysis_min_messages,
            max_messages=settings.analysis_max_messages,
            stale_after_seconds=settings.analysis_stale_after_seconds,
            rate_limit_seconds=settings.analysis_rate_limit_seconds,
            max_retries=settings.analysis_max_retries,
            backoff_seconds=settings.analysis_retry_backoff_seconds,
            backoff_max_seconds=settings.analysis_retry_backoff_max_seconds,
            stuck_after_seconds=settings.analysis_stuck_after_seconds,
            republish_after_seconds=settings.analysis_republish_after_seconds,
            archive_after_days=settings.analysis_archive_after_days,
        )

    @property
    def max_attempts(self) -> int:
        return 1 + self.max_retries


@dataclass(frozen=True)
class Decision:
    """What a trigger did: `enqueued` (publish job), `pending` (an open job exists: job),
    `rate_limited` (retry_after seconds), `not_due` (threshold or freshness not reached)."""

    status: str
    job: AnalysisJob | None = None
    retry_after: int | None = None
    # The open job's id when only that was read (the chat trigger's shortcut), else job.id.
    open_job_id: uuid.UUID | None = None

    @property
    def publish(self) -> bool:
        return self.status == "enqueued"

    def as_dict(self) -> dict[str, Any]:
        job_id = self.job.id if self.job is not None else self.open_job_id
        return {
            "status": self.status,
            "job_id": str(job_id) if job_id is not None else None,
            "retry_after": self.retry_after,
        }


# --- triggers ---------------------------------------------------------------------------------


_ADD_CHAT_MESSAGE = text(
    f"""
    WITH {NEW_USER_CTE}, message AS (
        INSERT INTO chat_messages (user_id, context_type, content, off_the_record)
        VALUES (:user_id, :context_type, :content, :off_the_record)
        RETURNING id, context_type, content, off_the_record, created_at
    )
    SELECT message.*, (
        SELECT count(*) FROM (
            SELECT 1 FROM chat_messages AS earlier
            WHERE earlier.user_id = :user_id AND earlier.context_type = :context_type
              AND NOT earlier.off_the_record
              AND earlier.created_at > COALESCE(
                  (SELECT max(created_at) FROM analysis_jobs
                   WHERE user_id = :user_id AND context_type = :context_type AND status <> 'failed'),
                  '-infinity'::timestamptz)
            LIMIT :cap
        ) AS unanalysed
    ) AS earlier_unanalysed, (
        SELECT id FROM analysis_jobs
        WHERE user_id = :user_id AND context_type = :context_type AND status = ANY(:open_statuses)
    ) AS open_job_id
    FROM message
    """
)


def add_chat_message(
    connection: Connection,
    db: Session,
    user_id: str,
    *,
    new_user_timezone: str | None,
    context_type: str,
    content: str,
    off_the_record: bool,
    rules: Rules,
) -> tuple[Row, Decision]:
    """Store the message, then the chat trigger: 5+ new on-the-record messages since the last
    analysis of this context (the last job that did not fail) enqueue a low-priority job.

    The message, the caller's user row if new, the count of the on-the-record messages before it
    since that analysis and the open job (if any) are one autocommitted statement on `connection`;
    only a due trigger without an open job opens a transaction (on `db`).
    """
    message = connection.execute(
        _ADD_CHAT_MESSAGE,
        {
            "user_id": user_id,
            "timezone": new_user_timezone or DEFAULT_TIMEZONE,
            "context_type": context_type,
            "content": content,
            "off_the_record": off_the_record,
            "cap": rules.chat_trigger_messages,
            "open_statuses": list(OPEN_STATUSES),
        },
    ).one()
    if off_the_record or message.earlier_unanalysed + 1 < rules.chat_trigger_messages:
        return message, Decision("not_due")
    if message.open_job_id is not None:
        return message, Decision("pending", open_job_id=message.open_job_id)
    return message, request_analysis(db, user_id, context_type, "chat", rules)


def interpretations_for_view(
    db: Session, user_id: str, context_type: str | None, rules: Rules
) -> tuple[list[ProfileInterpretation], dict[str, Decision]]:
    """The stored interpretations; each missing or stale context gets a medium-priority job.

    With a context_type, that context; without, every context the user has chatted in.
    """
    query = select(ProfileInterpretation).where(ProfileInterpretation.user_id == user_id)
    if context_type is not None:
        query = query.where(ProfileInterpretation.context_type == context_type)
    rows = list(db.scalars(query.order_by(ProfileInterpretation.context_type)))
    if context_type is not None:
        contexts = {context_type}
    else:
        contexts = set(
            db.scalars(
                select(ChatMessage.context_type)
                .where(ChatMessage.user_id == user_id, ChatMessage.off_the_record.is_(False))
                .distinct()
            )
        )
    now = _db_now(db)
    fresh = {
        row.context_type
        for row in rows
        if now - row.analyzed_at < timedelta(seconds=rules.stale_after_seconds)
    }
    db.commit()
    decisions = {
        context: request_analysis(db, user_id, context, "view", rules)
        if context not in fresh
        else Decision("not_due")
        for context in sorted(contexts)
    }
    return rows, decisions


def request_analysis(db: Session, user_id: str, context_type: str, source: str, rules: Rules) -> Decision:
    """Dedupe, rate limit, then insert a pending job; serialised per user and context.

    The rate limit counts jobs that actually ran the analyser within the window; a job that ended
    with too little data or failed does not use up the hour.
    """
    db.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"analysis:{user_id}:{context_type}", 0)))
    )
    open_job = db.scalar(
        select(AnalysisJob).where(
            AnalysisJob.user_id == user_id,
            AnalysisJob.context_type == context_type,
            AnalysisJob.status.in_(OPEN_STATUSES),
        )
    )
    if open_job is not None:
        db.commit()
        return Decision("pending", open_job)
    window = timedelta(seconds=rules.rate_limit_seconds)
    last_run = db.execute(
        select(func.max(AnalysisJob.created_at), func.now()).where(
            AnalysisJob.user_id == user_id,
            AnalysisJob.context_type == context_type,
            AnalysisJob.outcome == "analysed",
            AnalysisJob.created_at > func.now() - window,
        )
    ).one()
    if last_run[0] is not None:
        db.commit()
        retry_after = max(1, math.ceil((last_run[0] + window - last_run[1]).total_seconds()))
        return Decision("rate_limited", retry_after=retry_after)
    job = AnalysisJob(
        user_id=user_id, context_type=context_type, source=source, priority=PRIORITY_BY_SOURCE[source]
    )
    db.add(job)
    try:
        db.commit()
    except IntegrityError:
        # Only reachable if a writer bypassed the lock: the unique index keeps one open job.
        db.rollback()
        return Decision("pending", db.scalar(_open_job_query(user_id, context_type)))
    log.info(
        "enqueued analysis job=%s user=%s context=%s priority=%s source=%s",
        job.id,
        user_id,
        context_type,
        job.priority,
        source,
    )
    return Decision("enqueued", job)


def _open_job_query(user_id: str, context_type: str):
    return select(AnalysisJob).where(
        AnalysisJob.user_id == user_id,
        AnalysisJob.context_type == context_type,
        AnalysisJob.status.in_(OPEN_STATUSES),
    )


@dataclass(frozen=True)
class RunMessage:
    """What `analysis.run` is published with. The job's user travels with its id so that a job
    deleted together with its account ends as skipped instead of failing as an unknown id."""

    job_id: uuid.UUID
    priority: str
    user_id: str

    @property
    def args(self) -> list[str]:
        return [str(self.job_id)]

    @property
    def kwargs(self) -> dict[str, str]:
        return {"user_id": self.user_id}

    @property
    def celery_priority(self) -> int:
        return CELERY_PRIORITY[self.priority]


def run_message(job: AnalysisJob) -> RunMessage:
    return RunMessage(job.id, job.priority, job.user_id)


def record_published(db: Session, job_id: uuid.UUID, celery_task_id: str) -> None:
    db.execute(update(AnalysisJob).where(AnalysisJob.id == job_id).values(celery_task_id=celery_task_id))
    db.commit()


def get_user_job(db: Session, user_id: str, job_id: uuid.UUID) -> AnalysisJob:
    job = db.scalar(select(AnalysisJob).where(AnalysisJob.id == job_id, AnalysisJob.user_id == user_id))
    if job is None:
        raise NotFound(f"analysis job {job_id} not found")
    return job


def list_jobs(
    db: Session,
    *,
    status: str | None,
    user_id: str | None,
    context_type: str | None,
    archived: bool,
    page: int,
    page_size: int,
) -> tuple[list[AnalysisJob], int]:
    query = select(AnalysisJob).where(
        AnalysisJob.archived_at.is_not(None) if archived else AnalysisJob.archived_at.is_(None)
    )
    if status is not None:
        query = query.where(AnalysisJob.status == status)
    if user_id is not None:
        query = query.where(AnalysisJob.user_id == user_id)
    if context_type is not None:
        query = query.where(AnalysisJob.context_type == context_type)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(AnalysisJob.created_at.desc(), AnalysisJob.id)
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    return list(rows), total


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    status: str  # completed | retry | failed | duplicate | lost_claim | skipped
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
        .values(status="processing", started_at=func.now(), attempts=AnalysisJob.attempts + 1)
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
    try:
        analysis = analyser.analyse(context_type, messages)
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
    analysis=None,
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
    job = db.get(AnalysisJob, job_id)
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
    changed = db.execute(
        update(AnalysisJob)
        .where(AnalysisJob.id == job_id, AnalysisJob.status == "processing", AnalysisJob.attempts == attempt)
        .values(status="failed", error=error, completed_at=func.now(), **usage)
        .returning(AnalysisJob.id)
    ).one_or_none()
    db.commit()
    if changed is None:
        return RunOutcome("lost_claim", job_id)
    log.error("analysis job=%s failed after %d attempts: %s", job_id, attempt, error)
    return RunOutcome("failed", job_id, detail=error)


# --- recovery, dead letters, housekeeping -------------------------------------------------


@dataclass
class SweepResult:
    requeued: list[uuid.UUID]
    failed: list[uuid.UUID]
    republish: list[RunMessage]  # to publish after the commit

    def as_dict(self) -> dict[str, Any]:
        return {
            "requeued_stuck": [str(i) for i in self.requeued],
            "failed_stuck": [str(i) for i in self.failed],
            "republished": len(self.republish),
        }


def sweep(db: Session, rules: Rules) -> SweepResult:
    """Stuck processing jobs back to pending (or failed when out of attempts); pending jobs whose
    message is overdue (lost with a Redis restart or flush) listed for republishing."""
    stuck_before = func.now() - timedelta(seconds=rules.stuck_after_seconds)
    stuck = AnalysisJob.status == "processing", AnalysisJob.started_at < stuck_before
    timeout = f"timed out: processing for more than {rules.stuck_after_seconds}s"
    failed = db.scalars(
        update(AnalysisJob)
        .where(*stuck, AnalysisJob.attempts >= rules.max_attempts)
        .values(status="failed", error=timeout, completed_at=func.now())
        .returning(AnalysisJob.id)
    ).all()
    requeued = db.scalars(
        update(AnalysisJob)
        .where(*stuck, AnalysisJob.attempts < rules.max_attempts)
        .values(status="pending", error=timeout, next_attempt_at=func.now() - timedelta(days=1))
        .returning(AnalysisJob.id)
    ).all()
    overdue = db.execute(
        update(AnalysisJob)
        .where(
            AnalysisJob.status == "pending",
            AnalysisJob.next_attempt_at < func.now() - timedelta(seconds=rules.republish_after_seconds),
        )
        .values(next_attempt_at=func.now())
        .returning(AnalysisJob.id, AnalysisJob.priority, AnalysisJob.user_id)
    ).all()
    db.commit()
    result = SweepResult(list(requeued), list(failed), [RunMessage(*row) for row in overdue])
    if requeued or failed:
        log.warning(
            "cleaned up stuck analysis jobs: requeued=%s failed=%s",
            [str(i) for i in requeued],
            [str(i) for i in failed],
        )
    if overdue:
        log.warning("republishing analysis jobs whose message was lost: %s", [str(r.id) for r in overdue])
    return result


@dataclass
class ReplayResult:
    replayed: list[RunMessage]  # to publish after the commit
    skipped: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": [str(m.job_id) for m in self.replayed], "skipped": self.skipped}


def replay_failed(db: Session, job_id: uuid.UUID | None) -> ReplayResult:
    """Dead-letter replay: failed job(s) back to pending with a fresh attempt budget.

    Bypasses the rate limit (an operator asked); a job whose user and context already have an
    open job is skipped, since the open job will produce the same interpretation.
    """
    query = select(AnalysisJob.id).where(AnalysisJob.status == "failed")
    if job_id is None:
        query = query.where(AnalysisJob.archived_at.is_(None)).order_by(AnalysisJob.created_at)
    else:
        if db.get(AnalysisJob, job_id) is None:
            raise NotFound(f"analysis job {job_id} not found")
        query = query.where(AnalysisJob.id == job_id)
    replayed, skipped = [], {}
    for candidate in db.scalars(query).all():
        try:
            with db.begin_nested():
                row = db.execute(
                    update(AnalysisJob)
                    .where(AnalysisJob.id == candidate, AnalysisJob.status == "failed")
                    .values(
                        status="pending",
                        attempts=0,
                        outcome=None,
                        completed_at=None,
                        started_at=None,
                        archived_at=None,
                        next_attempt_at=func.now(),
                    )
                    .returning(AnalysisJob.id, AnalysisJob.priority, AnalysisJob.user_id)
                ).one_or_none()
        except IntegrityError:
            skipped[str(candidate)] = "another job for this user and context is open"
            continue
        if row is not None:
            replayed.append(RunMessage(*row))
    if job_id is not None and not replayed and str(job_id) not in skipped:
        skipped[str(job_id)] = "job is not failed"
    db.commit()
    log.info("replayed failed analysis jobs: %s skipped=%s", [str(m.job_id) for m in replayed], skipped)
    return ReplayResult(replayed, skipped)


def archive_failed(db: Session, older_than_days: int) -> int:
    """Failed jobs parked longer than the window leave the dead-letter list (kept, archived)."""
    count = len(
        db.scalars(
            update(AnalysisJob)
            .where(
                AnalysisJob.status == "failed",
                AnalysisJob.archived_at.is_(None),
                AnalysisJob.completed_at < func.now() - timedelta(days=older_than_days),
            )
            .values(archived_at=func.now())
            .returning(AnalysisJob.id)
        ).all()
    )
    db.commit()
    log.info("archived %d failed analysis jobs older than %d days", count, older_than_days)
    return count


def _db_now(db: Session) -> datetime:
    return db.scalar(select(func.now()))
