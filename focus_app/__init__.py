"""Flask application factory: `gunicorn 'focus_app:create_app()'`."""

from __future__ import annotations

import logging
import time
import uuid

import redis
from flask import Flask, Response, g, request

from focus_app import logs
from focus_app.config import ConfigError, Settings
from focus_app.db import Database

access_log = logging.getLogger("focus_app.access")


def create_app(settings: Settings | None = None) -> Flask:
    if settings is None:
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
    logs.configure(settings.log_level, settings.log_format)

    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        API_TITLE="Focus analytics API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",  # Swagger UI at /api/docs is served by focus_app.web
    )
    app.extensions["settings"] = settings
    database = Database.connect(settings.database_url)
    app.extensions["db"] = database
    app.extensions["redis"] = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        health_check_interval=30,
    )

    @app.teardown_appcontext
    def remove_session(_exc: BaseException | None) -> None:
        database.end_session()

    @app.before_request
    def bind_request_id() -> None:
        logs.clear()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if 0 < len(incoming) <= 100 else uuid.uuid4().hex
        g.started = time.perf_counter()
        logs.bind(request_id=g.request_id)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        """The access line, in the same JSON as every other line (replaces gunicorn's)."""
        response.headers["X-Request-ID"] = g.get("request_id", "")
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        logs.bind(method=request.method, path=request.path, status=response.status_code)
        access_log.info("%s %s %s %.1fms", request.method, request.path, response.status_code, elapsed_ms)
        return response

    @app.teardown_request
    def unbind_request(_exc: BaseException | None) -> None:
        # A line the thread logs between requests must not carry the last request's ids.
        logs.clear()

    from focus_app.api import register_api
    from focus_app.security import register_headers
    from focus_app.web import register_web
    from workers.celery_app import celery_init_app

    register_api(app)
    register_web(app)
    register_headers(app, settings.cors_origins)
    celery_init_app(app)
    return app
