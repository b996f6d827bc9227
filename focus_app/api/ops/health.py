"""Liveness and readiness."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
import redis
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError

from focus_app.api.base import Blueprint
from focus_app.extensions import db_session, redis_client
from focus_app.services.ops import readiness

URL_PREFIX = ""
blp = Blueprint("service", __name__, description="Liveness and readiness")
log = logging.getLogger(__name__)

CHECK_STATES = [readiness.OK, readiness.UNREACHABLE, readiness.REFUSES_WRITES]


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"enum": ["ok"]})


class ChecksSchema(ma.Schema):
    database = ma.fields.String(metadata={"enum": CHECK_STATES})
    redis = ma.fields.String(metadata={"enum": CHECK_STATES})
    broker = ma.fields.String(metadata={"enum": CHECK_STATES})


class ReadySchema(ma.Schema):
    status = ma.fields.String(metadata={"enum": ["ok", "unavailable"]})
    checks = ma.fields.Nested(ChecksSchema)
    reasons = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={"description": "why a Redis or broker check failed, in the server's words"},
    )


@blp.route("/health")
@blp.doc(security=[])
@blp.response(200, HealthSchema)
def health() -> dict[str, str]:
    """Liveness: the web process answers."""
    return {"status": "ok"}


@blp.route("/ready")
@blp.doc(security=[])
@blp.response(200, ReadySchema)
@blp.alt_response(
    503,
    schema=ReadySchema,
    description="PostgreSQL, Redis or the broker is unreachable, or Redis refuses writes",
)
def ready() -> tuple[dict[str, Any], int]:
    """Readiness: PostgreSQL is reachable, Redis and the broker accept a write (503 otherwise)."""
    redis_state = readiness.redis_state(redis_client())
    broker_state = _check_broker()
    checks = {
        "database": readiness.database_state(db_session()),
        "redis": redis_state[0],
        "broker": broker_state[0],
    }
    reasons = {
        name: reason for name, (_, reason) in (("redis", redis_state), ("broker", broker_state)) if reason
    }
    healthy = all(state == "ok" for state in checks.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    if reasons:
        body["reasons"] = reasons
    return body, 200 if healthy else 503


def _check_broker() -> tuple[str, str | None]:
    """The broker's Redis takes a write (it may be another server than REDIS_URL's)."""
    celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            return readiness.redis_state(connection.default_channel.client)
    except (BrokerError, OSError) as exc:
        # Connecting PINGs, which a Redis refusing writes may answer with its error (MISCONF).
        if isinstance(exc.__cause__, redis.ResponseError):
            log.warning("readiness: broker refuses writes: %s", exc)
            return readiness.REFUSES_WRITES, str(exc.__cause__)
        log.warning("readiness: broker unreachable: %s", exc)
        return readiness.UNREACHABLE, str(exc)
