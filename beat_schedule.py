"""The one place the periodic schedule is declared (`celery -A workers beat`)."""

from __future__ import annotations

import math
from datetime import timedelta

from celery.schedules import crontab

from focus_app.config import Settings

INTELLIGENCE_TICK_MINUTES = 10


def build_beat_schedule(settings: Settings) -> dict:
    profile_interval = settings.profile_update_interval_seconds
    retry_interval = settings.intelligence_retry_interval_seconds
    maintenance_interval = settings.profile_maintenance_interval_minutes * 60
    return {
        "focus-update-profiles": {
            "task": "focus.update_profiles",
            "schedule": timedelta(seconds=profile_interval),
            "kwargs": {"trigger": "beat"},
            # A message older than one interval is superseded by the next one.
            "options": {"expires": profile_interval},
        },
        # Monday 02:00 in FOCUS_TIMEZONE, then every 10 minutes through the grace period: a beat
        # that was down at 02:00 still runs the week, and the week's slot makes it run once.
        "intelligence-weekly": {
            "task": "intelligence.weekly",
            "schedule": crontab(
                minute=f"*/{INTELLIGENCE_TICK_MINUTES}",
                hour=_grace_hours(settings.intelligence_grace_seconds),
                day_of_week="mon",
            ),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": INTELLIGENCE_TICK_MINUTES * 60},
        },
        "intelligence-retry-failed": {
            "task": "intelligence.retry_failed",
            "schedule": timedelta(seconds=retry_interval),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": retry_interval},
        },
        "analysis-requeue-stale": {
            "task": "analysis.requeue_stale",
            "schedule": timedelta(seconds=settings.analysis_sweep_interval_seconds),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": settings.analysis_sweep_interval_seconds},
        },
        "ops-archive-failed-analysis-jobs": {
            "task": "ops.archive_failed_analysis_jobs",
            "schedule": crontab(hour=3, minute=30),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": 3600},
        },
        "maintenance-consolidate-profiles": {
            "task": "maintenance.consolidate_profiles",
            "schedule": timedelta(seconds=maintenance_interval),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": maintenance_interval},
        },
    }


def _grace_hours(grace_seconds: int) -> str:
    """Hours of Monday that the window from 02:00 touches (the task checks the exact end)."""
    last = min(23, 2 + math.ceil(grace_seconds / 3600) - 1)
    return "2" if last == 2 else f"2-{last}"
