"""When an analysis job is opened (seed 002): after enough chat, on a stale profile view, or by
hand. A trigger decides under a per-user-and-context advisory lock (and the partial unique index
backs it up), so concurrent requests make at most one open job; one analysis per user and context
per rate-limit window."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Select, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from focus_app.models.analysis import OPEN_STATUSES, AnalysisJob, ChatMessage, ProfileInterpretation
from focus_app.models.focus import DEFAULT_TIMEZONE
from focus_app.services.analysis.jobs import PRIORITY_BY_SOURCE, Rules, RunMessage, run_message
from focus_app.services.focus.users import NEW_USER_CTE

log = logging.getLogger("analysis_jobs")


@dataclass(frozen=True)
class Decision:
    """What a trigger did: `enqueued` (publish job), `pending` (an open job exists: job),
    `deferred` (the open job waits for the user's next day of model tokens: job),
    `rate_limited` (retry_after seconds), `not_due` (threshold or freshness not reached)."""

    status: str
    job: AnalysisJob | None = None
    retry_after: int | None = None
    # The open job's id when only that was read (the chat trigger's shortcut), else job.id.
    open_job_id: uuid.UUID | None = None

    @property
    def to_publish(self) -> list[RunMessage]:
        """`analysis.run` for a newly enqueued job, to publish after the commit."""
        return [run_message(self.job)] if self.status == "enqueued" and self.job is not None else []

    def as_dict(self) -> dict[str, Any]:
        job_id = self.job.id if self.job is not None else self.open_job_id
        return {
            "status": self.status,
            "job_id": str(job_id) if job_id is not None else None,
            "retry_after": self.retry_after,
        }


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
                   WHERE user_id = :user_id AND context_type = :context_type
                     AND status NOT IN ('failed', 'cancelled')),
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
    analysis of this context (the last job that neither failed nor was cancelled) enqueue a
    low-priority job.

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
        return Decision("deferred" if open_job.status == "deferred" else "pending", open_job)
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


def _open_job_query(user_id: str, context_type: str) -> Select[AnalysisJob]:
    return select(AnalysisJob).where(
        AnalysisJob.user_id == user_id,
        AnalysisJob.context_type == context_type,
        AnalysisJob.status.in_(OPEN_STATUSES),
    )


def _db_now(db: Session) -> datetime:
    return db.execute(select(func.now())).scalar_one()
