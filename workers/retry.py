"""Retry policy shared by the tasks: exponential backoff with full jitter and a cap."""

from __future__ import annotations

from celery import Task
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError, OperationalError

# Errors worth retrying: the database or a connection was briefly unavailable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError,)

BACKOFF_FACTOR_SECONDS = 2
BACKOFF_MAX_SECONDS = 300
MAX_RETRIES = 5


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def retry_later(task: Task, exc: BaseException):
    """Raise Celery's Retry with the next backoff interval."""
    countdown = get_exponential_backoff_interval(
        BACKOFF_FACTOR_SECONDS, task.request.retries, BACKOFF_MAX_SECONDS, full_jitter=True
    )
    return task.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES)


def out_of_retries(task: Task) -> bool:
    return task.request.retries >= MAX_RETRIES
