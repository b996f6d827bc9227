"""Analysis jobs (seed 002): the thresholds, priorities and the message `analysis.run` is
published with; reading jobs for their users and operators.

PostgreSQL holds every job; the broker only carries job ids. Triggers (triggers.py) decide when a
job is opened, run.py runs one, recovery.py turns stuck and lost jobs back into published work and
replays the dead letters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from focus_app.models.analysis import AnalysisJob
from focus_app.services.jobkit.errors import NotFound
from focus_app.services.jobkit.pagination import Page, paginate

PRIORITY_BY_SOURCE = {"manual": "high", "view": "medium", "chat": "low"}
# Celery priority on the Redis transport: lower number = served first.
CELERY_PRIORITY = {"high": 0, "medium": 3, "low": 6}
# What a context type may be (the API's field and a task's argument alike).
CONTEXT_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,49}$"
CONTEXT_TYPE_RULE = "lower-case letters, digits, '_' or '-', at most 50 characters"


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


def record_published(db: Session, task_ids: dict[uuid.UUID, str]) -> None:
    """The `analysis.run` message each job went out with (one statement for a whole page)."""
    if task_ids:
        db.execute(
            text(
                "UPDATE analysis_jobs j SET celery_task_id = s.task_id "
                "FROM unnest(CAST(:ids AS uuid[]), CAST(:task_ids AS text[])) AS s(id, task_id) "
                "WHERE j.id = s.id"
            ),
            {"ids": list(task_ids), "task_ids": list(task_ids.values())},
        )
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
) -> Page[AnalysisJob]:
    query = select(AnalysisJob).where(
        AnalysisJob.archived_at.is_not(None) if archived else AnalysisJob.archived_at.is_(None)
    )
    if status is not None:
        query = query.where(AnalysisJob.status == status)
    if user_id is not None:
        query = query.where(AnalysisJob.user_id == user_id)
    if context_type is not None:
        query = query.where(AnalysisJob.context_type == context_type)
    return paginate(db, query, (AnalysisJob.created_at.desc(), AnalysisJob.id), page, page_size)
