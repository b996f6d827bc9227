"""Liveness and readiness."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError

from focus_app.api.base import Blueprint
from focus_app.extensions import db_session, redis_client
from focus_app.services.ops import readiness

URL_PREFIX = ""
blp = Blueprint("service", __name__, description="Liveness and readiness")
log = logging.getLogger(__name__)

CHECK_STATES = [readiness.OK, readiness.UNREACHABLE]


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"enum": ["ok"]})


class ChecksSchema(ma.Schema):
    database = ma.fields.String(metadata={"enum": CHECK_STATES})
    redis = ma.fields.String(metadata={"enum": CHECK_STATES})
    broker = ma.fields.String(metadata={"enum": CHECK_STATES})


class ReadySchema(ma.Schema):
    status = ma.fields.String(metadata={"enum": ["ok", "unavailable"]})
    checks = ma.fields.Nested(ChecksSchema)


@blp.route("/health")
@blp.doc(security=[])
@blp.response(200, HealthSchema)
def health() -> dict[str, str]:
    """Liveness: the web process answers."""
    return {"status": "ok"}


@blp.route("/ready")
@blp.doc(security=[])
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="PostgreSQL, Redis or the broker is unreachable")
def ready() -> tuple[dict[str, Any], int]:
    """Readiness: PostgreSQL, Redis and the broker are reachable (503 otherwise)."""
    checks = {
        "database": readiness.database_state(db_session()),
        "redis": readiness.redis_state(redis_client()),
        "broker": _check_broker(),
    }
    healthy = all(state == "ok" for state in checks.values())
    return {"status": "ok" if healthy else "unavailable", "checks": checks}, 200 if healthy else 503


def _check_broker() -> str:
    celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return readiness.OK
    except (BrokerError, OSError) as exc:
        log.warning("readiness: broker unreachable: %s", exc)
        return readiness.UNREACHABLE
