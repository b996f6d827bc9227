"""analysis.run (one job), analysis.requeue_stale (periodic sweeper), analysis.replay (dead letters)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from celery import shared_task

from focus_app.extensions import db_session, llm_provider, settings
from focus_app.services.analysis import recovery, run
from focus_app.services.analysis.analyser import analyser_for
from focus_app.services.analysis.jobs import CELERY_PRIORITY, Rules
from focus_app.services.ops.metrics import SENT_AT_HEADER
from workers.arguments import InvalidTaskArguments
from workers.base import FocusTask
from workers.publish import publish_analysis_runs


@shared_task(base=FocusTask, bind=True, name="analysis.run", max_retries=None)
def run_job(self: FocusTask, job_id: uuid.UUID, user_id: str | None = None) -> dict[str, Any]:
    """Run one analysis job; PostgreSQL counts its attempts, Celery only schedules the retry (or the
    job's turn under the shared model limit, which uses no attempt).

    `user_id` (sent by every publisher, optional by hand) lets a job that went with its user's
    account end as skipped instead of failing as an unknown id.
    """
    outcome = run.run_job(
        db_session(),
        job_id,
        analyser_for(llm_provider("analysis")),
        Rules.from_settings(settings()),
        user_id=user_id,
        published_at=_published_at(self),
    )
    if outcome.retry_in is not None and outcome.priority is not None:
        # If this publish fails the job stays pending and the sweeper publishes it again.
        raise self.retry(
            countdown=outcome.retry_in,
            priority=CELERY_PRIORITY[outcome.priority],
            exc=run.RetryLater(outcome.detail),
        )
    return outcome.as_dict()


@shared_task(base=FocusTask, bind=True, name="analysis.requeue_stale", ignore_result=False)
def requeue_stale(self: FocusTask, trigger: str = "manual") -> dict[str, Any]:
    """Stuck jobs back to pending (or failed), lost messages published again."""
    if (
        skipped := self.skipped_while_disabled(trigger, settings().analysis_sweep_interval_seconds)
    ) is not None:
        return skipped
    result = recovery.sweep(db_session(), Rules.from_settings(settings()))
    return {**result.as_dict(), "published": _count(publish_analysis_runs(result.republish))}


@shared_task(base=FocusTask, bind=True, name="analysis.replay", ignore_result=False)
def replay(
    self: FocusTask,
    job_id: uuid.UUID | None = None,
    error: str | None = None,
    context_type: str | None = None,
    user_id: str | None = None,
    failed_since: datetime | None = None,
    failed_until: datetime | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Re-run one failed job (`--args '["<job id>"]'`), or every failed, unarchived job the filter
    matches, none given: all of them (`--kwargs '{"error": "timeout", "context_type": "work"}'`;
    `"dry_run": true` only counts)."""
    criteria = recovery.ReplayFilter(error, context_type, user_id, failed_since, failed_until)
    if job_id is None:
        return recovery.replay_matching(
            db_session(),
            criteria,
            dry_run=dry_run,
            trigger="manual",
            task_id=self.request.id,
            publish=publish_analysis_runs,
        ).as_dict()
    if criteria.given() or dry_run:
        raise InvalidTaskArguments("job_id replays that one job: give it alone, or a filter without it")
    result = recovery.replay_failed(db_session(), job_id)
    return {**result.as_dict(), "published": _count(publish_analysis_runs(result.replayed))}


def _count(task_ids: list[str | None]) -> int:
    return sum(1 for task_id in task_ids if task_id is not None)


def _published_at(task: FocusTask) -> datetime | None:
    """The publish-time stamp every message carries (workers/signals.py), when present."""
    stamp = getattr(task.request, SENT_AT_HEADER, None)
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return datetime.fromtimestamp(stamp, UTC)
    return None
