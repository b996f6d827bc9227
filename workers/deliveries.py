"""The delivery limit every task runs under (called from the app's Task class before `run`)."""

from __future__ import annotations

from celery import Task
from celery.exceptions import Reject
from sqlalchemy.exc import SQLAlchemyError

from focus_app.extensions import db_session, redis_client, settings
from focus_app.services import parked_tasks
from workers.retry import retry_later


def enforce_delivery_limit(task: Task) -> None:
    """Raise Reject (the message is dropped from the broker) once it has been parked."""
    request = task.request
    if request.called_directly or not request.id:
        return
    count = parked_tasks.count_delivery(redis_client(), request.id, request.retries or 0)
    limit = settings().task_max_deliveries
    if count is None or count <= limit:
        return
    delivery = parked_tasks.Delivery(
        task_id=request.id,
        task_name=task.name,
        args=list(request.args or ()),
        kwargs=dict(request.kwargs or {}),
        queue=(request.delivery_info or {}).get("routing_key"),
        deliveries=count,
    )
    try:
        parked_tasks.park(db_session(), delivery, limit)
    except SQLAlchemyError as exc:
        # Not parked, so not dropped: try again later as a fresh attempt (its own count).
        db_session().rollback()
        raise retry_later(task, exc) from exc
    raise Reject(f"parked after {count} deliveries", requeue=False)
