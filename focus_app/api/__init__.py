"""HTTP API: flask-smorest blueprints under /api/v1, OpenAPI at /api/docs."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from types import ModuleType
from typing import Any

import redis
from flask import Flask, request
from flask_smorest import Api
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from focus_app.api.base import apply_body_limit, reject_unknown_query_arguments, reject_unstorable
from focus_app.api.ops.metrics import blueprint as metrics_blueprint
from focus_app.db import connection_lost
from focus_app.services.jobkit.errors import Conflict, DomainError, InvalidInput, NotFound

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


# Keys an `abort(...)` may add to the error body beside code, status, message and errors.
EXTRA_ERROR_FIELDS = ("retry_after",)


class FocusApi(Api):
    """Every error body is {code, status, message, errors?}, including the ones Werkzeug raises
    (404, 405, 413) and a 429 with its `retry_after`."""

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, Any]:
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = "invalid input, see errors" if code == 422 else error.description
        data = getattr(error, "data", None) or {}
        payload.update({key: data[key] for key in EXTRA_ERROR_FIELDS if key in data})
        return payload, code, headers


def register_api(app: Flask) -> Api:
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                    "adminKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
            },
            "security": [{"bearerAuth": []}],
        },
    )
    api = FocusApi(app)

    for module in _resource_modules():
        api.register_blueprint(module.blp, url_prefix=API_PREFIX + module.URL_PREFIX)

    app.register_blueprint(metrics_blueprint)

    @app.before_request
    def check_request() -> None:
        apply_body_limit()
        reject_unstorable("path", request.view_args or {})
        if request.path.startswith(API_PREFIX + "/"):
            reject_unknown_query_arguments()

    _register_error_handlers(app, api)
    return api


def _resource_modules() -> list[ModuleType]:
    """Each module of this package (and of its family packages) that defines a blueprint `blp` is
    one API resource."""
    modules = [
        importlib.import_module(info.name) for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}.")
    ]
    return [module for module in modules if hasattr(module, "blp")]


def _register_error_handlers(app: Flask, api: Api) -> None:
    status_by_error = {NotFound: 404, Conflict: 409, InvalidInput: 422}

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError) -> tuple[dict[str, Any], int]:
        status = next(code for cls, code in status_by_error.items() if isinstance(error, cls))
        payload: dict[str, Any] = {
            "code": status,
            "message": error.message,
            "status": {404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity"}[status],
        }
        if error.errors:
            payload["errors"] = error.errors
        return payload, status

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(BrokerError)
    def redis_unavailable(error: Exception) -> tuple[dict[str, Any], int, Any]:
        # Only endpoints that truly need Redis get here (job state, task owners); writes degrade.
        log.error("redis unavailable: %s", error)
        return api.handle_http_exception(
            _with_message(ServiceUnavailable(), "redis unavailable, try again shortly")
        )

    @app.errorhandler(InternalServerError)
    def internal_error(error: InternalServerError) -> tuple[dict[str, Any], int, Any]:
        return _internal_error(api, error)

    @app.errorhandler(SQLAlchemyError)
    def database_error(error: SQLAlchemyError) -> tuple[dict[str, Any], int, Any]:
        """A lost or refused connection is a 503 the client may retry; the pool has replaced the
        connection. Any other is a bug."""
        if not connection_lost(error):
            return _internal_error(api, InternalServerError(original_exception=error))
        log.error("database unavailable: %s", getattr(error, "orig", None) or error)
        return api.handle_http_exception(
            _with_message(ServiceUnavailable(), "database unavailable, try again shortly")
        )

    del domain_error, database_error, redis_unavailable, internal_error


def _internal_error(api: Api, error: InternalServerError) -> tuple[dict[str, Any], int, Any]:
    original = getattr(error, "original_exception", None)
    if original is not None:
        log.exception("unhandled error", exc_info=original)
    return api.handle_http_exception(_with_message(error, "internal error"))


def _with_message(error: HTTPException, message: str) -> HTTPException:
    error.data = {"message": message}  # type: ignore[attr-defined]  # read by flask-smorest
    return error
