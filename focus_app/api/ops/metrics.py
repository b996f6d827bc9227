"""GET /metrics: Prometheus text format, outside /api/v1, behind the admin key.

The figures name jobs, queues and failure counts, so they are not public. Prometheus sends the
key as `Authorization: Bearer <ADMIN_API_KEY>` (its scrape `authorization` setting, any version);
`X-API-Key` works too.
"""

from __future__ import annotations

import hmac

import redis
from flask import Blueprint, Response, current_app, request
from flask_smorest import abort
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from focus_app.extensions import db_session, redis_client, settings
from focus_app.services.jobkit.llm_flow import Limits
from focus_app.services.ops.metrics import FocusCollector
from workers.celery_app import broker_layout

blueprint = Blueprint("metrics", __name__)


@blueprint.before_request
def require_admin_key() -> None:
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    supplied = request.headers.get("X-API-Key") or (bearer.strip() if scheme.lower() == "bearer" else "")
    if not supplied:
        abort(401, message="missing admin key", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    if not hmac.compare_digest(supplied.encode(), settings().admin_api_key.encode()):
        abort(403, message="wrong API key")


@blueprint.route("/metrics")
def metrics() -> Response:
    """Queues, job outcomes, retry queue, dead letters, periodic successes and model usage, read at
    scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    queues = [queue.name for queue in current_app.extensions["celery"].conf.task_queues]
    collector = FocusCollector(
        db_session(),
        redis_client(),
        _broker_client(),
        broker_layout(queues),
        Limits.from_settings(settings()),
    )
    registry.register(collector)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _broker_client() -> redis.Redis:
    """The broker's Redis: the cache client unless CELERY_BROKER_URL names another server."""
    config = settings()
    if config.broker_url == config.redis_url:
        return redis_client()
    extensions = current_app.extensions
    if "broker_redis" not in extensions:
        extensions["broker_redis"] = redis.Redis.from_url(
            config.broker_url,
            socket_timeout=config.redis_socket_timeout_seconds,
            socket_connect_timeout=config.redis_connect_timeout_seconds,
        )
    return extensions["broker_redis"]
