"""The Celery app bound to the Flask app (pattern of Flask's examples/celery)."""

from __future__ import annotations

import pkgutil
from collections.abc import Iterable
from typing import Any

from celery.backends.redis import RedisBackend
from flask import Flask
from kombu import Queue
from kombu.transport.redis import PRIORITY_STEPS, Channel

from beat_schedule import build_beat_schedule
from focus_app.config import Settings
from focus_app.services.ops.metrics import BrokerLayout
from workers import broker
from workers.base import FocusCelery, FocusTask

QUEUES = ("profiles", "analysis", "maintenance", "intelligence", "default")


def task_modules() -> list[str]:
    """Every module of workers.tasks; a new job family registers by adding its module."""
    import workers.tasks

    return [f"workers.tasks.{module.name}" for module in pkgutil.iter_modules(workers.tasks.__path__)]


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "timezone": settings.timezone,
        "enable_utc": True,
        "include": task_modules(),
        # Routing: one queue per job family, each scaled by its own workers.
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": "default",
        "task_routes": {
            "focus.*": {"queue": "profiles"},
            "analysis.*": {"queue": "analysis"},
            "maintenance.*": {"queue": "maintenance"},
            "intelligence.*": {"queue": "intelligence"},
            "ops.*": {"queue": "default"},
        },
        # Reliability: a task is acknowledged after it ran, and redelivered if its worker died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        "broker_transport_options": {
            # Above the hard time limit, or a long task would be handed to a second worker.
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            # Messages of a dead worker come back one visibility timeout after their delivery: scan
            # for them every 10 s (kombu's default scans every 10th tick, 100 s).
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            "queue_order_strategy": "priority",
            "socket_connect_timeout": settings.redis_connect_timeout_seconds,
            "socket_timeout": settings.redis_socket_timeout_seconds,
            # A producer's connection is tried once (kombu's default sleeps 2 s before giving up);
            # the worker's consumer reconnects through its own loop (broker_connection_max_retries).
            "max_retries": 0,
            **broker.BROKER_TRANSPORT_OPTIONS,
        },
        "result_backend_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        # Publishing never waits on Redis (the web tier): a dead or blackholed Redis fails a publish
        # within the timeouts (once: workers/publish.py then pauses), a producer is never waited
        # for, and no result channel is subscribed before a publish (PollingRedisBackend).
        "redis_socket_connect_timeout": settings.redis_connect_timeout_seconds,
        "redis_socket_timeout": settings.redis_socket_timeout_seconds,
        "broker_connection_timeout": settings.redis_connect_timeout_seconds,
        "broker_pool_acquire_timeout": settings.redis_socket_timeout_seconds,
        "override_backends": {"redis": "workers.celery_app:PollingRedisBackend"},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Deploys (SIGTERM, remapped to SIGQUIT by REMAP_SIGTERM in the Procfile): running tasks get
        # this long to finish, then are cancelled and their messages go back to the queue at once.
        "worker_soft_shutdown_timeout": float(settings.worker_soft_shutdown_seconds),
        # Results only where a client polls; tasks opt in with ignore_result=False.
        "task_ignore_result": True,
        "result_expires": 24 * 3600,
        "result_extended": True,
        # Events on so Flower sees workers and tasks by their dotted names.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": build_beat_schedule(settings),
        # Broker faults (workers/broker.py): outlive a Redis that refuses writes; bounded waits on
        # a path that silently drops packets, for the result backend too.
        **broker.CELERY_SETTINGS,
    }


class PollingRedisBackend(RedisBackend):
    """Celery's Redis result backend without the subscription to a task's result channel before
    its publish: nothing here waits on a result it published (`GET /jobs` reads the stored state;
    `AsyncResult.get()` subscribes when it starts waiting), and the subscription made every
    publish with Redis down retry its reconnection for up to 20 s, holding the request."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None


def broker_layout(queues: Iterable[str]) -> BrokerLayout:
    """Where kombu's Redis transport keeps the messages of each queue (one list per priority
    step) and the deliveries not yet acknowledged: the metrics read them."""
    return BrokerLayout(
        queue_lists={
            queue: [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]
            for queue in queues
        },
        unacked_key=Channel.unacked_key,
    )


def celery_init_app(app: Flask) -> FocusCelery:
    celery = FocusCelery(app.name, task_cls=FocusTask)
    celery.flask_app = app
    celery.config_from_object(celery_config(app.extensions["settings"]))
    celery.set_default()
    app.extensions["celery"] = celery

    from workers import signals

    signals.connect(app)
    return celery
