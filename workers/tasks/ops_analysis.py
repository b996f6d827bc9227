"""ops.archive_failed_analysis_jobs: dead letters older than the window leave the list."""

from __future__ import annotations

from celery import shared_task

from focus_app.extensions import db_session, settings
from focus_app.services import analysis
from workers.arguments import one_of, optional_non_negative_int
from workers.switches import disabled_beat_run


@shared_task(bind=True, name="ops.archive_failed_analysis_jobs", ignore_result=False)
def archive_failed_analysis_jobs(self, older_than_days=None, trigger="manual"):
    days = optional_non_negative_int(older_than_days, "older_than_days")
    one_of(trigger, "trigger", ("beat", "manual", "api"))
    if (skipped := disabled_beat_run(self, trigger, 24 * 3600)) is not None:
        return skipped
    window = settings().analysis_archive_after_days if days is None else days
    return {"archived": analysis.archive_failed(db_session(), window), "older_than_days": window}
