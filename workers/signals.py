"""Worker process hooks."""

from __future__ import annotations

from celery.signals import task_postrun, task_prerun, worker_process_init
from flask import Flask

from focus_app import logs


def connect(app: Flask) -> None:
    def dispose_inherited_pool(**_kwargs: object) -> None:
        # A forked child must open its own connections (SQLAlchemy pooling docs, Superset does this).
        app.extensions["db"].after_fork()

    worker_process_init.connect(dispose_inherited_pool, weak=False)


@task_prerun.connect
def bind_task(task_id=None, task=None, **_kwargs: object) -> None:
    """Every line a task logs names the task; services add job ids and user ids."""
    logs.clear()
    logs.bind(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def unbind_task(**_kwargs: object) -> None:
    logs.clear()
