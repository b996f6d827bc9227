"""Celery entry point: `celery -A workers worker|beat|flower|call ...` resolves `workers.app`.

The app is built on first access, not at import, so importing a task module builds nothing.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.base import FocusCelery


def __getattr__(name: str) -> FocusCelery:
    if name in ("app", "celery"):
        return _celery_app()
    raise AttributeError(f"module 'workers' has no attribute {name!r}")


@cache
def _celery_app() -> FocusCelery:
    from focus_app import create_app

    celery: FocusCelery = create_app().extensions["celery"]
    return celery
