"""The base of every task: what each task would otherwise repeat, declared once.

Around a task's own body (argument parsing plus one service call) it
- runs the body in the Flask app context (Flask's examples/celery pattern);
- parks a message delivered TASK_MAX_DELIVERIES times without finishing (its worker died each
  time) instead of running it again;
- checks and converts every argument by its name (workers/arguments.py): a bad one fails the
  task with a message naming it, an unknown keyword too, and is never retried;
- rolls back the database session after any error, retries transient errors (database or
  connection briefly unavailable, a provider's retryable error) with exponential backoff, jitter
  and a cap, long enough to outlast a 5-minute PostgreSQL outage and never more than a minute
  apart (so the work resumes within a minute of the outage ending), and once out of retries (or
  on an error a retry cannot fix) calls the task's `gave_up` hook, so its unit is counted as
  failed and its run finishes;
- a task that fails for good leaves no run it started `running`: they are failed with its error.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject, TaskPredicate
from flask import Flask
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.jobkit import fanout, runs, switches
from focus_app.services.jobkit.errors import DomainError, RecordedFailure
from focus_app.services.ops import parked
from workers.arguments import InvalidTaskArguments, checked

log = logging.getLogger(__name__)

# The one retry policy of every family: waits of 1, 2, 4 … s capped at 60 s, each drawn from its
# upper half (jitter that still guarantees progress). 16 retries wait at least 331 s in all, so a
# task outlasts a 5-minute outage, and resumes at most 60 s after it ended.
BACKOFF_FACTOR_SECONDS = 1
BACKOFF_MAX_SECONDS = 60
MAX_RETRIES = 16

# (task, the error, the task's checked arguments): count the task's unit as failed.
GaveUp = Callable[["FocusTask", BaseException, dict[str, Any]], None]


class FocusCelery(Celery):
    """The Celery app, bound to the Flask app its tasks run in."""

    flask_app: Flask


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the database or a connection was briefly unavailable, or a provider said so."""
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return bool(getattr(exc, "retryable", False))


class FocusTask(Task):
    # Set per task with the decorator's `gave_up=` option (see GaveUp).
    gave_up: GaveUp | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        app: FocusCelery = self.app  # type: ignore[assignment]
        with app.flask_app.app_context():
            self._enforce_delivery_limit()
            arguments = self._checked_arguments(args, kwargs)
            try:
                return self.run(**arguments)
            except TaskPredicate:
                db_session().rollback()
                raise
            except (InvalidTaskArguments, DomainError, RecordedFailure) as exc:
                db_session().rollback()
                self._fail_open_runs(exc)
                raise
            except Exception as exc:
                db_session().rollback()
                if is_transient(exc) and self._may_retry():
                    raise self._retry_later(exc) from exc
                self._give_up(exc, arguments)
                self._fail_open_runs(exc)
                raise

    def beat_slot(self, trigger: str, interval_seconds: int) -> str | None:
        """The schedule slot of a beat-fired run (a slot runs once), on the database's clock; None
        for other triggers."""
        if trigger != "beat":
            return None
        return runs.beat_slot(interval_seconds, runs.database_now(db_session()))

    def skipped_while_disabled(self, trigger: str, interval_seconds: int) -> dict[str, str] | None:
        """For a periodic task without runs of its own: a disabled job's beat fire is recorded as
        skipped, and this is the task's result; None when it should run."""
        db = db_session()
        slot = self.beat_slot(trigger, interval_seconds)
        if not switches.skip_if_disabled(db, self.name, trigger=trigger, slot=slot, task_id=self.request.id):
            return None
        db.commit()
        return {"status": "skipped", "reason": "job disabled"}

    def _checked_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = inspect.signature(self.run).bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidTaskArguments(f"{self.name}: {exc}") from None
        return checked(bound.arguments)

    def _may_retry(self) -> bool:
        return not self.request.called_directly and self.request.retries < MAX_RETRIES

    def _retry_later(self, exc: Exception) -> BaseException:
        countdown = retry_countdown(self.request.retries)
        return self.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES)

    def _give_up(self, exc: BaseException, arguments: dict[str, Any]) -> None:
        if self.gave_up is None:
            return
        try:
            self.gave_up(exc, arguments)  # type: ignore[call-arg, arg-type]  # bound as a method
        except SQLAlchemyError as record_error:
            # Still down: the unit stays pending and a later run publishes it again.
            db_session().rollback()
            log.warning("%s: failure not recorded (%s); its unit stays pending", self.name, record_error)

    def _fail_open_runs(self, exc: BaseException) -> None:
        try:
            failed = fanout.crashed(db_session(), self.request.id, error_text(exc))
        except SQLAlchemyError as record_error:
            db_session().rollback()
            log.warning("%s: open runs not failed (%s)", self.name, record_error)
            return
        if failed:
            log.warning("%s failed (%s): %d open run(s) marked failed", self.name, error_text(exc), failed)

    def _enforce_delivery_limit(self) -> None:
        """A message that killed its worker TASK_MAX_DELIVERIES times is parked, not run: Reject
        drops it from the broker once it is kept in PostgreSQL."""
        request = self.request
        if request.called_directly or not request.id:
            return
        count = parked.count_delivery(redis_client(), request.id, request.retries or 0)
        limit = settings().task_max_deliveries
        if count is None or count <= limit:
            return
        delivery = parked.Delivery(
            task_id=request.id,
            task_name=self.name,
            args=list(request.args or ()),
            kwargs=dict(request.kwargs or {}),
            queue=(request.delivery_info or {}).get("routing_key"),
            deliveries=count,
        )
        try:
            parked.park(db_session(), delivery, limit)
        except SQLAlchemyError as exc:
            # Not parked, so not dropped: try again later as a fresh attempt (its own count).
            db_session().rollback()
            raise self._retry_later(exc) from exc
        raise Reject(f"parked after {count} deliveries", requeue=False)


def retry_countdown(retries: int) -> float:
    """Seconds before retry number `retries` + 1: exponential, capped, jittered within its upper half."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FACTOR_SECONDS * 2**retries)
    return random.uniform(ceiling / 2, ceiling)


def error_text(exc: BaseException) -> str:
    """How a failure is recorded on a run or job."""
    return f"{type(exc).__name__}: {exc}"
