"""ops.archive_failed_analysis_jobs: dead letters older than the window leave the list."""

from __future__ import annotations

from celery import shared_task

from focus_app.extensions import db_session, settings
from focus_app.services import analysis
from workers.arguments import optional_non_negative_int


@shared_task(bind=True, name="ops.archive_failed_analysis_jobs")
def archive_failed_analysis_jobs(self, older_than_days=None):
    days = optional_non_negative_int(older_than_days, "older_than_days")
    window = settings().analysis_archive_after_days if days is None else days
    return {"archived": analysis.archive_failed(db_session(), window), "older_than_days": window}
