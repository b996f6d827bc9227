"""Celery entry point: `celery -A workers worker|beat|flower|call ...` resolves `workers.app`.

The app is built on first access, not at import, so importing a task module builds nothing.
"""

from functools import cache


def __getattr__(name: str):
    if name in ("app", "celery"):
        return _celery_app()
    raise AttributeError(f"module 'workers' has no attribute {name!r}")


@cache
def _celery_app():
    from focus_app import create_app

    return create_app().extensions["celery"]
