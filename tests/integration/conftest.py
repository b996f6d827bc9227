"""The app, a real Celery worker (threads pool, in this process) and clean state per test."""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from sqlalchemy import func, select, text

from focus_app import create_app
from focus_app.api.auth import issue_token
from focus_app.migrate import upgrade
from focus_app.models import Base
from focus_app.models.analysis import AnalysisJob
from tests.conftest import TEST_SECRET
from tests.integration.llm_stub import LLMStub

# Application keys only: the broker's own keys in the same Redis are purged through Celery.
CACHE_KEY_PATTERNS = ("focus:*", "brief:*")
TABLES = [table.name for table in Base.metadata.sorted_tables]


@pytest.fixture(scope="session")
def app(test_settings):
    upgrade(test_settings.database_url)
    flask_app = create_app(test_settings)
    yield flask_app
    # Stop listening for results before the embedded Redis goes away, or the result consumer
    # spends its 20 reconnection attempts on a server that is gone. Results kept alive by
    # reference cycles (a task's exception re-raised by `.get()` holds its frames) are finalised
    # first, while Redis still answers their unsubscribe.
    gc.collect()
    celery = flask_app.extensions["celery"]
    consumer = getattr(celery.backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        consumer.stop()
    celery.close()


@pytest.fixture(scope="session")
def celery_app(app):
    return app.extensions["celery"]


@pytest.fixture(scope="session")
def worker(celery_app) -> Iterator[object]:
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as running:
        yield running


@pytest.fixture
def db(app):
    session = app.extensions["db"].session()
    yield session
    session.rollback()
    app.extensions["db"].session.remove()


@pytest.fixture
def redis_conn(app):
    return app.extensions["redis"]


@pytest.fixture(autouse=True)
def clean_state(app):
    """Every test starts from empty tables, no focus keys, empty queues and an idle worker."""
    # A task a previous test left running (a batch fanned out after the result it waited for)
    # would write into the fresh tables; the in-process worker's own state says when it is idle.
    while True:
        wait_for(lambda: not worker_state.active_requests, timeout=60)
        if app.extensions["celery"].control.purge() == 0 and not worker_state.active_requests:
            break
    with app.extensions["db"].engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    client = app.extensions["redis"]
    for pattern in CACHE_KEY_PATTERNS:
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    yield


@pytest.fixture
def settings_with(app, monkeypatch):
    """Swap the app's settings for this test; the in-process worker reads the same object."""

    def apply(**overrides):
        monkeypatch.setitem(
            app.extensions, "settings", dataclasses.replace(app.extensions["settings"], **overrides)
        )

    return apply


@pytest.fixture
def llm(settings_with):
    """The app and the in-process worker on the loopback model stub (OpenAI shape)."""
    stub = LLMStub()
    settings_with(
        llm_provider="openai",
        llm_base_url=stub.url,
        llm_model="stub-model",
        llm_timeout_seconds=60,
        llm_cost_input_per_mtok=1.0,
        llm_cost_output_per_mtok=5.0,
        analysis_retry_backoff_seconds=0.05,
        analysis_retry_backoff_max_seconds=0.2,
    )
    yield stub
    stub.close()


@pytest.fixture
def analysis_jobs_settle(db):
    """The test waits for the analysis jobs it published, so none runs into the next test's cleanup."""
    yield

    def settled():
        db.rollback()
        return not db.scalar(
            select(func.count()).where(
                AnalysisJob.status.in_(("pending", "processing")), AnalysisJob.celery_task_id.is_not(None)
            )
        )

    wait_for(settled)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    def headers(user_id: str, **kwargs) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(TEST_SECRET, user_id, **kwargs)}"}

    return headers


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05):
    """Poll until the predicate is truthy; tests wait on outcomes, never on wall-clock speed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
