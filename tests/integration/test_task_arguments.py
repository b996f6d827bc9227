"""`celery call` typed by hand: wrong types and unknown ids fail that task with a message naming
the problem, are not retried, and the worker keeps serving. Every registered task is covered."""

from __future__ import annotations

import inspect
import uuid
from datetime import date, timedelta

import pytest
from celery.signals import task_failure, task_retry

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.usefixtures("worker")

WRONG = {"not": ["a", "valid", "value"]}
# A valid value for each required parameter, so the wrong one under test is the only problem.
VALID = {"user_ids": ["nobody"], "job_id": "00000000-0000-4000-8000-000000000000", "entity_id": "nobody"}
# Arguments a task needs together with its required ones (a hand-typed generate names its week).
_today = date.today()
ALSO_NEEDED = {"intelligence.generate": {"week_of": str(_today - timedelta(days=_today.weekday() + 7))}}


@pytest.fixture
def outcomes():
    failures: dict[str, BaseException] = {}
    retries: list[str] = []

    def on_failure(task_id=None, exception=None, **_kwargs):
        failures[task_id] = exception

    def on_retry(request=None, **_kwargs):
        retries.append(request.id)

    task_failure.connect(on_failure, weak=False)
    task_retry.connect(on_retry, weak=False)
    yield failures, retries
    task_failure.disconnect(on_failure)
    task_retry.disconnect(on_retry)


def app_tasks(celery_app) -> dict[str, object]:
    """The project's tasks (test-only tasks other suites register in this process are not)."""
    return {
        name: task
        for name, task in celery_app.tasks.items()
        if type(task).__module__.startswith("workers.tasks.")
        or task.run.__module__.startswith("workers.tasks.")
    }


def parameters(task) -> list[inspect.Parameter]:
    return list(inspect.signature(task.run).parameters.values())


def cases(celery_app) -> list[tuple[str, dict, str]]:
    """(task, kwargs, what the error message must name) for every task and parameter."""
    found = []
    for name, task in sorted(app_tasks(celery_app).items()):
        params = parameters(task)
        required = {p.name: VALID[p.name] for p in params if p.default is inspect.Parameter.empty}
        required.update(ALSO_NEEDED.get(name, {}))
        found.append((name, {**required, "bogus": 1}, "bogus"))
        for param in params:
            found.append((name, {**required, param.name: WRONG}, param.name))
    return found


def test_wrong_types_fail_each_task_clearly_and_the_worker_keeps_serving(celery_app, outcomes):
    failures, retries = outcomes
    sent = {
        celery_app.send_task(name, kwargs=kwargs).id: (name, kwargs, named)
        for name, kwargs, named in cases(celery_app)
    }

    wait_for(lambda: set(sent) <= set(failures), timeout=60)

    for task_id, (name, kwargs, named) in sent.items():
        assert named in str(failures[task_id]), (name, kwargs, failures[task_id])
    assert not set(sent) & set(retries), "bad arguments are never retried"
    assert celery_app.send_task("focus.update_profiles", kwargs={"user_ids": []}).get(timeout=30)


def test_every_task_has_a_valid_value_for_its_required_parameters(celery_app):
    for name, task in app_tasks(celery_app).items():
        for param in parameters(task):
            if param.default is inspect.Parameter.empty:
                assert param.name in VALID, f"{name}: add a valid {param.name} to VALID"


def test_unknown_ids_fail_with_a_clear_message(celery_app, outcomes):
    failures, _ = outcomes
    unknown = str(uuid.uuid4())
    calls = {
        "analysis.run": {"job_id": unknown},
        "analysis.replay": {"job_id": unknown},
        "focus.compute_profiles": {"user_ids": ["x"], "run_id": unknown, "unit_no": 0},
        "intelligence.generate": {"user_ids": ["x"], "run_id": unknown, "unit_no": 0},
        "maintenance.consolidate_profile": {"entity_id": "x", "run_id": unknown, "unit_no": 0},
    }
    sent = {celery_app.send_task(name, kwargs=kwargs).id: name for name, kwargs in calls.items()}

    wait_for(lambda: set(sent) <= set(failures), timeout=60)

    for task_id, name in sent.items():
        assert (
            unknown in str(failures[task_id])
            and "not found" in str(failures[task_id])
            or ("has no unit" in str(failures[task_id]))
        ), (name, failures[task_id])
