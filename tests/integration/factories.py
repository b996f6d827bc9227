"""Rows written straight into PostgreSQL for tests that need sessions in the past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from focus_app.models import FocusSession, JobRun, Task, User
from focus_app.models.analysis import AnalysisJob, ChatMessage
from focus_app.services.analysis import jobs as analysis_jobs
from focus_app.services.analysis import run as analysis_run
from focus_app.services.analysis import triggers
from focus_app.services.jobkit import runs
from focus_app.services.jobkit.llm import LLMError


def make_user(db: Session, user_id: str, timezone: str = "UTC", *, created_at: datetime | None = None) -> str:
    values = {"id": user_id, "timezone": timezone}
    if created_at is not None:
        values["created_at"] = created_at
    db.execute(insert(User).values(**values))
    db.commit()
    return user_id


def make_task(db: Session, user_id: str, course: str | None, title: str = "Study") -> object:
    task_id = db.execute(
        insert(Task).values(user_id=user_id, title=title, course=course).returning(Task.id)
    ).scalar_one()
    db.commit()
    return task_id


def make_session(
    db: Session,
    user_id: str,
    start: datetime,
    duration: int | None,
    *,
    expected: int | None = 25,
    break_minutes: int = 0,
    interruptions: int = 0,
    completed: bool = True,
    score: int | None = None,
    task_id=None,
    bump_version: bool = True,
) -> object:
    """An ended session (or an active one with duration=None), bumping the user's version."""
    ended = duration is not None
    end = start + timedelta(minutes=duration + break_minutes) if ended else None
    session_id = db.execute(
        insert(FocusSession)
        .values(
            user_id=user_id,
            task_id=task_id,
            start_time=start,
            actual_start_time=start,
            end_time=end,
            actual_end_time=end,
            duration_minutes=duration,
            expected_duration=expected,
            break_minutes=break_minutes,
            interruption_count=interruptions,
            was_completed=completed,
            focus_score=score,
        )
        .returning(FocusSession.id)
    ).scalar_one()
    if bump_version:
        db.execute(update(User).where(User.id == user_id).values(sessions_version=User.sessions_version + 1))
    db.commit()
    return session_id


def make_run(
    db: Session,
    job_name: str,
    status: str,
    *,
    started: datetime,
    trigger: str = "beat",
    succeeded: int = 0,
    failed: int = 0,
    error: str | None = None,
) -> object:
    """A finished job_runs row written by the job-run service, moved to `started` (a past time)."""
    run = runs.start_run(db, job_name, trigger).run
    run.succeeded, run.failed, run.error = succeeded, failed, error
    db.flush()
    if status != "running":
        runs.finish_run(db, run, status=status)
    db.execute(
        update(JobRun)
        .where(JobRun.id == run.id)
        .values(
            started_at=started,
            finished_at=None if status == "running" else started + timedelta(seconds=2),
        )
    )
    db.commit()
    return run.id


class _BrokenProvider:
    """An analyser whose provider always refuses: the job fails on its only attempt."""

    def analyse(self, context_type: str, messages: list[str], *, budget=None):
        raise LLMError("provider refused: 401 invalid API key", retryable=False)


def make_failed_analysis_job(db: Session, user_id: str, context_type: str = "work") -> object:
    """A dead-lettered analysis job: enough chat messages, then through the analysis service a
    manual request and a run whose provider refuses."""
    rules = analysis_jobs.Rules()
    db.execute(
        insert(ChatMessage),
        [
            {"user_id": user_id, "context_type": context_type, "content": f"message {n}"}
            for n in range(rules.min_messages)
        ],
    )
    db.commit()
    job = triggers.request_analysis(db, user_id, context_type, "manual", rules).job
    outcome = analysis_run.run_job(db, job.id, _BrokenProvider(), rules)
    assert outcome.status == "failed", outcome
    return job.id


def make_dead_letters(
    db: Session, user_id: str, contexts: list[str], error: str, *, failed_at: datetime | None = None
) -> None:
    """Failed analysis jobs (one per context) as a run leaves them: out of attempts, with the
    error and the time they failed; the user is created if new."""
    db.execute(pg_insert(User).values(id=user_id).on_conflict_do_nothing())
    db.execute(
        insert(AnalysisJob),
        [
            {
                "user_id": user_id,
                "context_type": context,
                "priority": "low",
                "source": "chat",
                "status": "failed",
                "attempts": 4,
                "error": error,
                "created_at": (failed_at or datetime.now(UTC)) - timedelta(minutes=1),
                "completed_at": failed_at or datetime.now(UTC),
            }
            for context in contexts
        ],
    )
    db.commit()


def make_analysed_job(db: Session, user_id: str, context_type: str, minutes_ago: int) -> None:
    """A completed analysis that ran the analyser `minutes_ago`: it counts for the rate limit."""
    db.execute(
        insert(AnalysisJob).values(
            user_id=user_id,
            context_type=context_type,
            priority="low",
            source="chat",
            status="completed",
            outcome="analysed",
            created_at=func.now() - timedelta(minutes=minutes_ago),
        )
    )
    db.commit()
