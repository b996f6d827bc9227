"""The one place the periodic schedule is declared (`celery -A workers beat`)."""

from __future__ import annotations

from datetime import timedelta

from focus_app.config import Settings


def build_beat_schedule(settings: Settings) -> dict:
    profile_interval = settings.profile_update_interval_seconds
    maintenance_interval = settings.profile_maintenance_interval_minutes * 60
    return {
        "focus-update-profiles": {
            "task": "focus.update_profiles",
            "schedule": timedelta(seconds=profile_interval),
            "kwargs": {"trigger": "beat"},
            # A message older than one interval is superseded by the next one.
            "options": {"expires": profile_interval},
        },
        "maintenance-consolidate-profiles": {
            "task": "maintenance.consolidate_profiles",
            "schedule": timedelta(seconds=maintenance_interval),
            "kwargs": {"trigger": "beat"},
            "options": {"expires": maintenance_interval},
        },
    }
