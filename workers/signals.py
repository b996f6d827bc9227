"""Worker process hooks."""

from __future__ import annotations

from celery.signals import worker_process_init
from flask import Flask


def connect(app: Flask) -> None:
    def dispose_inherited_pool(**_kwargs: object) -> None:
        # A forked child must open its own connections (SQLAlchemy pooling docs, Superset does this).
        app.extensions["db"].after_fork()

    worker_process_init.connect(dispose_inherited_pool, weak=False)
