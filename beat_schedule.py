"""The one place the periodic schedule is declared (`celery -A workers beat`)."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab

from focus_app.config import Settings


def build_beat_schedule(settings: Settings) -> dict:
    profile_interval = settings.profile_update_interval_seconds
    return {
        "focus-update-profiles": {
            "task": "focus.update_profiles",
            "schedule": timedelta(seconds=profile_interval),
            "kwargs": {"trigger": "beat"},
            # A message older than one interval is superseded by the next one.
            "options": {"expires": profile_interval},
        },
        "analysis-requeue-stale": {
            "task": "analysis.requeue_stale",
            "schedule": timedelta(seconds=settings.analysis_sweep_interval_seconds),
            "options": {"expires": settings.analysis_sweep_interval_seconds},
        },
        "ops-archive-failed-analysis-jobs": {
            "task": "ops.archive_failed_analysis_jobs",
            "schedule": crontab(hour=3, minute=30),
            "options": {"expires": 3600},
        },
    }
