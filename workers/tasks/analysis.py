"""analysis.run (one job), analysis.requeue_stale (periodic sweeper), analysis.replay (dead letters)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import SQLAlchemyError

from focus_app.extensions import db_session, settings
from focus_app.services import analysis
from focus_app.services.analyser import analyser_from_settings
from focus_app.services.metrics import SENT_AT_HEADER
from workers.arguments import InvalidTaskArguments, one_of, optional_user_id, optional_uuid
from workers.retry import is_transient, retry_later
from workers.switches import disabled_beat_run

log = logging.getLogger("analysis_jobs")


@shared_task(bind=True, name="analysis.run", max_retries=None)
def run(self, job_id, user_id=None):
    """Run one analysis job; PostgreSQL counts its attempts, Celery only schedules the retry.

    `user_id` (sent by every publisher, optional by hand) lets a job that went with its user's
    account end as skipped instead of failing as an unknown id.
    """
    job_uuid = optional_uuid(job_id, "job_id")
    if job_uuid is None:
        raise InvalidTaskArguments("job_id is required")
    owner = optional_user_id(user_id, "user_id")
    rules = analysis.Rules.from_settings(settings())
    try:
        outcome = analysis.run_job(
            db_session(),
            job_uuid,
            analyser_from_settings(settings()),
            rules,
            user_id=owner,
            published_at=_published_at(self.request),
        )
    except SQLAlchemyError as exc:
        db_session().rollback()
        if is_transient(exc):
            raise retry_later(self, exc) from exc
        raise
    if outcome.retry_in is not None:
        # If this publish fails the job stays pending and the sweeper publishes it again.
        priority = analysis.CELERY_PRIORITY[outcome.priority]
        raise self.retry(countdown=outcome.retry_in, priority=priority)
    return outcome.as_dict()


@shared_task(bind=True, name="analysis.requeue_stale", ignore_result=False)
def requeue_stale(self, trigger="manual"):
    """Stuck jobs back to pending (or failed), lost messages published again."""
    one_of(trigger, "trigger", ("beat", "manual", "api"))
    if (skipped := disabled_beat_run(self, trigger, settings().analysis_sweep_interval_seconds)) is not None:
        return skipped
    result = analysis.sweep(db_session(), analysis.Rules.from_settings(settings()))
    return {**result.as_dict(), "published": publish_jobs(result.republish)}


@shared_task(bind=True, name="analysis.replay", ignore_result=False)
def replay(self, job_id=None):
    """Re-run one failed job (`--args '["<job id>"]'`) or every failed, unarchived job."""
    job_uuid = optional_uuid(job_id, "job_id")
    result = analysis.replay_failed(db_session(), job_uuid)
    return {**result.as_dict(), "published": publish_jobs(result.replayed)}


def publish_jobs(messages: list[analysis.RunMessage]) -> int:
    """Publish after the commit; a job whose publish fails stays pending for the sweeper."""
    published = 0
    for message in messages:
        try:
            sent = run.apply_async(args=message.args, kwargs=message.kwargs, priority=message.celery_priority)
        except BrokerError as exc:
            log.warning("broker unavailable, analysis job=%s left for the sweeper: %s", message.job_id, exc)
            continue
        analysis.record_published(db_session(), message.job_id, sent.id)
        published += 1
    return published


def _published_at(request) -> datetime | None:
    """The publish-time stamp every message carries (workers/signals.py), when present."""
    stamp = getattr(request, SENT_AT_HEADER, None)
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return datetime.fromtimestamp(stamp, UTC)
    return None
