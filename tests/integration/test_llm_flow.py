"""LLM flow control against real Redis and PostgreSQL, the loopback model stub and the in-process
worker: one shared limit, a provider's back-off shared by every caller, daily budgets, waiting
that uses up no attempt, and the usage figures of /metrics and the operator page.

The four-worker-process proof is tests/faults/test_llm_shared_limit.py."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import redis
import time_machine
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select, update

from focus_app.devservers import free_port
from focus_app.models.analysis import AnalysisJob, ProfileInterpretation
from focus_app.models.intelligence import WeeklyBrief
from focus_app.services.analysis.analyser import SYSTEM_PROMPT, build_prompt
from focus_app.services.jobkit import keys
from focus_app.services.jobkit.llm import Budget, LLMError, OverBudget, Throttled, transport_from_settings
from focus_app.services.jobkit.llm_flow import (
    Flow,
    LimitedProvider,
    Limits,
    budget_day,
    most_tokens,
    window_state,
)
from focus_app.services.ops.llm_usage import usage_totals
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.conftest import wait_for
from tests.integration.factories import make_session, make_user
from tests.integration.llm_stub import LLMStub
from tests.integration.test_analysis_jobs import WORK_MESSAGES, add_messages, job_of, wait_status
from tests.integration.test_metrics import scrape

pytestmark = pytest.mark.usefixtures("worker", "analysis_jobs_settle")

ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
HOME_MESSAGES = [
    message.replace("work", "home").replace("night shift", "garden") for message in WORK_MESSAGES
]


@pytest.fixture
def stub(llm):
    """The loopback stub counting tokens the way a tokenizer of English would."""
    llm.usage_from_prompt = True
    return llm


@pytest.fixture
def flow_for(app, redis_conn, stub, test_settings):
    """A limited provider on the test's Redis and PostgreSQL, as a worker process builds one."""
    transport = transport_from_settings(
        dataclasses.replace(test_settings, llm_provider="openai", llm_base_url=stub.url, llm_model="stub")
    )

    def make(family: str = "analysis", **limits) -> LimitedProvider:
        flow = Flow(redis_conn, app.extensions["db"].statements, Limits(**limits))
        return LimitedProvider(transport, flow, family)

    return make


@pytest.fixture
def model(settings_with, stub):
    """The app and the in-process worker on the stub, with the limits a test asks for."""

    def configure(**limits) -> LLMStub:
        settings_with(**limits)
        return stub

    return configure


def usage(db, family: str = "analysis") -> dict:
    db.rollback()
    return usage_totals(db).get(family, {})


def analysis_most(messages: list[str], context: str = "work") -> int:
    """The most one analysis of these messages can cost, as the flow control reckons it."""
    return most_tokens(SYSTEM_PROMPT, build_prompt(context, messages), 1024)


def run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded():
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


# --- the limiter ------------------------------------------------------------------------------


def test_callers_on_many_threads_share_one_limit(flow_for, stub, db):
    provider = flow_for(tokens_per_window=1500, requests_per_window=4, window_seconds=1)
    answers = []

    def caller():
        for n in range(4):
            while True:
                try:
                    answers.append(provider.complete("s" * 100, f"{n} " + "p" * 400, max_tokens=100))
                    break
                except Throttled as exc:
                    time.sleep(exc.retry_in)  # handed back to the queue, as a task does

    assert run_threads(caller, 6) == []

    assert len(answers) == 24 and len(stub.answered()) == 24
    calls, tokens = stub.busiest(1.0)
    assert calls <= 4 and tokens <= 1500, (calls, tokens)
    figures = usage(db)
    assert figures["calls"] == 24 and figures["waits"] > 0
    assert figures["tokens_in"] + figures["tokens_out"] == sum(seen.tokens for seen in stub.seen)


def test_a_providers_429_pauses_every_caller_for_its_retry_after(flow_for, stub, db, redis_conn):
    stub.script = ["rate_limited"]
    stub.retry_after = 1.5
    analysis, brief = flow_for("analysis"), flow_for("brief")
    first = threading.Thread(target=lambda: analysis.complete("s", "first", max_tokens=50))
    first.start()
    wait_for(lambda: redis_conn.get(keys.LLM_BACKOFF_UNTIL))  # the 429 came back and is shared

    brief.complete("s", "second", max_tokens=50)  # another caller, during the back-off
    first.join(timeout=30)

    refused, *answered = stub.seen
    assert refused.status == 429 and [seen.status for seen in answered] == [200, 200]
    assert all(seen.at >= refused.at + 1.5 - 0.05 for seen in answered)
    assert usage(db)["backoffs"] == 1 and usage(db)["calls"] == 1
    assert usage(db, "brief")["waits"] == 1 and usage(db, "brief")["calls"] == 1


def test_a_turn_too_far_away_raises_throttled_and_is_listed_as_waiting(flow_for, stub, db, redis_conn):
    provider = flow_for(requests_per_window=1, window_seconds=30)
    provider.complete("s", "first", max_tokens=50)

    with pytest.raises(Throttled) as waited:
        provider.complete("s", "second", max_tokens=50)

    assert 28 < waited.value.retry_in < 34 and waited.value.reason == "LLM_REQUESTS_PER_MINUTE"
    assert waited.value.retryable
    state = window_state(redis_conn)
    assert (state.requests, state.waiting, state.backoff_seconds) == (1, {"analysis": 1}, 0.0)
    assert len(stub.seen) == 1 and usage(db)["waits"] == 1


def test_a_daily_budget_refuses_before_sending_and_starts_from_postgresql(flow_for, stub, db):
    most = most_tokens("s", "p" * 200, 100)
    provider = flow_for(user_daily_tokens=most)
    asked: list[date] = []
    budget = Budget("ann", spent_on=lambda day: asked.append(day) or 0)
    today, tomorrow = budget_day(datetime.now(UTC))

    provider.complete("s", "p" * 200, max_tokens=100, budget=budget)
    with pytest.raises(OverBudget) as over:
        provider.complete("s", "p" * 200, max_tokens=100, budget=budget)

    assert asked == [today]  # once: then Redis holds the day's count
    assert over.value.resume_at == tomorrow and not over.value.retryable
    assert (
        f"LLM_USER_DAILY_TOKENS: {stub.seen[0].tokens:,} of {most:,} tokens used or in flight today"
        in str(over.value)
    )
    # Redis lost a user's count (restart, flush): PostgreSQL's says the day is spent.
    with pytest.raises(OverBudget):
        provider.complete("s", "p" * 200, max_tokens=100, budget=Budget("bob", spent_on=lambda day: 1))
    assert len(stub.seen) == 1 and usage(db)["deferrals"] == 2


def test_concurrent_calls_of_one_user_never_overspend_the_day(flow_for, stub):
    stub.delay = 0.3  # every call is still in flight when the others ask
    most = most_tokens("s", "p" * 200, 100)
    provider = flow_for(user_daily_tokens=2 * most)
    budget = Budget("cat", spent_on=lambda day: 0)
    outcomes: list[str] = []

    def caller():
        try:
            provider.complete("s", "p" * 200, max_tokens=100, budget=budget)
            outcomes.append("sent")
        except OverBudget:
            outcomes.append("deferred")

    assert run_threads(caller, 6) == []
    assert sorted(outcomes) == ["deferred"] * 4 + ["sent"] * 2
    assert len(stub.seen) == 2 and sum(seen.tokens for seen in stub.seen) <= 2 * most


def test_without_redis_a_limit_is_not_risked_and_no_limit_calls_anyway(app, test_settings, stub):
    # No retries: redis-py's default backoff would only make the test slower.
    gone = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    transport = transport_from_settings(
        dataclasses.replace(test_settings, llm_provider="openai", llm_base_url=stub.url)
    )
    statements = app.extensions["db"].statements

    limited = LimitedProvider(transport, Flow(gone, statements, Limits(tokens_per_window=10_000)), "analysis")
    with pytest.raises(LLMError, match="flow control unavailable") as error:
        limited.complete("s", "p", max_tokens=50)
    assert error.value.retryable and not isinstance(error.value, Throttled)
    assert stub.seen == []

    unlimited = LimitedProvider(transport, Flow(gone, statements, Limits()), "analysis")
    assert unlimited.complete("s", "p", max_tokens=50).text
    assert len(stub.seen) == 1


# --- the families -----------------------------------------------------------------------------


def job_body(client, auth, user: str, job_id: str) -> dict:
    response = client.get(f"/api/v1/profile/analyze/{job_id}", headers=auth(user))
    assert response.status_code == 200
    return response.json


def analyze(client, auth, user: str, context: str = "work") -> dict:
    return client.post("/api/v1/profile/analyze", json={"context_type": context}, headers=auth(user)).json


def test_an_analysis_waits_its_turn_without_using_an_attempt(client, auth, db, model, caplog):
    limit = analysis_most(WORK_MESSAGES)  # one analysis in flight at a time
    stub = model(llm_tokens_per_minute=limit, llm_limit_window_seconds=3)
    users = ("first", "second")
    for user in users:
        add_messages(db, user, "work", WORK_MESSAGES)
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    ids = {user: analyze(client, auth, user)["job"]["id"] for user in users}

    # One of them is handed back until the other's call has left the window; the API says why.
    waiting = wait_for(
        lambda: next(
            (body for user in users if (body := job_body(client, auth, user, ids[user]))["waiting_for"]), None
        ),
        timeout=30,
    )
    assert waiting["status"] == "pending" and waiting["attempts"] == 0 and waiting["waits"] == 1
    assert waiting["waiting_for"] == "waiting for its turn under LLM_TOKENS_PER_MINUTE"
    assert datetime.fromisoformat(waiting["next_attempt_at"]) > datetime.now(UTC) - timedelta(seconds=1)

    done = [wait_status(db, ids[user], "completed") for user in users]
    assert [(job.outcome, job.attempts, job.waiting_for) for job in done] == [("analysed", 1, None)] * 2
    assert sorted(job.waits for job in done) == [0, 1]
    # The task was retried with the reason, which is what Flower shows beside its RETRY state.
    retried = [record.getMessage() for record in caplog.records if " retry: Retry in " in record.getMessage()]
    assert (
        len(retried) == 1 and "RetryLater('waiting for its turn under LLM_TOKENS_PER_MINUTE')" in retried[0]
    )
    assert stub.busiest(3.0)[1] <= limit
    assert usage(db)["calls"] == 2 and usage(db)["waits"] >= 1


def test_a_providers_429_hands_the_job_back_for_its_retry_after(client, auth, db, model):
    stub = model()
    stub.script = ["rate_limited"]
    stub.retry_after = 3
    add_messages(db, "eager", "work", WORK_MESSAGES)
    job_id = analyze(client, auth, "eager")["job"]["id"]

    waiting = wait_for(lambda: (body := job_body(client, auth, "eager", job_id))["waiting_for"] and body)
    assert waiting["waiting_for"] == "waiting for its turn under a provider back-off"
    assert waiting["attempts"] == 0

    job = wait_status(db, job_id, "completed")
    assert (job.attempts, job.waits, job.tokens_in) == (1, 1, stub.seen[1].tokens_in)
    refused, answered = stub.seen
    assert (refused.status, answered.status) == (429, 200) and answered.at >= refused.at + 3 - 0.05
    figures = scrape(client)
    assert figures[("focus_llm_provider_backoffs_total", (("family", "analysis"),))] == 1
    assert figures[("focus_llm_calls_total", (("family", "analysis"),))] == 1
    assert figures[("focus_llm_waits_total", (("family", "analysis"),))] == 1
    assert figures[("focus_llm_tokens_total", (("direction", "in"), ("family", "analysis")))] == job.tokens_in


def test_a_user_over_the_daily_budget_is_deferred_then_picked_up_the_next_day(
    client, auth, db, model, celery_app
):
    budget = analysis_most(WORK_MESSAGES)  # pays for one analysis, not two
    stub = model(llm_user_daily_tokens=budget)
    add_messages(db, "frugal", "work", WORK_MESSAGES)
    add_messages(db, "frugal", "home", HOME_MESSAGES)
    first = analyze(client, auth, "frugal", "work")["job"]["id"]
    wait_status(db, first, "completed")
    second = analyze(client, auth, "frugal", "home")["job"]["id"]

    deferred = wait_status(db, second, "deferred")
    body = job_body(client, auth, "frugal", second)
    _, next_day = budget_day(datetime.now(UTC))
    assert body["status"] == "deferred" and body["attempts"] == 0 and body["tokens_in"] == 0
    assert body["waiting_for"].startswith("LLM_USER_DAILY_TOKENS: ")
    assert f"may run again at {next_day:%Y-%m-%d %H:%M} UTC" in body["waiting_for"]
    assert datetime.fromisoformat(body["next_attempt_at"]) == next_day
    # Nothing half-stored, nothing spent past the budget: the stub saw one call.
    assert [seen.status for seen in stub.seen] == [200] and stub.seen[0].tokens <= budget
    db.rollback()
    assert db.scalars(select(ProfileInterpretation.context_type)).all() == ["work"]
    # Asking again finds the deferred job; the sweeper leaves it until its time.
    again = client.post("/api/v1/profile/analyze", json={"context_type": "home"}, headers=auth("frugal"))
    assert (again.status_code, again.json["status"], again.json["job"]["id"]) == (200, "deferred", second)
    celery_app.send_task("analysis.requeue_stale").get(timeout=30)
    assert job_of(db, second).status == "deferred" and deferred.waits == 1

    # The next UTC day: PostgreSQL's clock cannot travel, so the job's time is moved to now.
    db.execute(update(AnalysisJob).where(AnalysisJob.id == second).values(next_attempt_at=datetime.now(UTC)))
    db.commit()
    with time_machine.travel(next_day + timedelta(minutes=5)):
        swept = celery_app.send_task("analysis.requeue_stale").get(timeout=30)
        assert swept["resumed_deferred"] == [second] and swept["published"] == 1
        job = wait_status(db, second, "completed")
    assert (job.outcome, job.attempts, job.waiting_for) == ("analysed", 1, None)
    assert usage(db)["deferrals"] == 1


def test_brief_stories_never_wait_long_the_batch_keeps_the_deterministic_story(celery_app, db, model):
    stub = model(llm_requests_per_minute=1, llm_limit_window_seconds=30)
    for user in ("amy", "ben"):
        make_user(db, user)
        make_session(db, user, datetime(2026, 1, 6, 9, tzinfo=UTC), 25, score=4)

    result = celery_app.send_task(
        "intelligence.generate", kwargs={"user_ids": ["amy", "ben"], "week_of": "2026-01-05"}
    ).get(timeout=60)

    assert result["written"] == 2 and result["failed"] == []
    db.rollback()
    sources = sorted(db.scalars(select(WeeklyBrief.story_source)).all())
    assert sources == ["deterministic", "llm"] and len(stub.answered()) == 1
    assert usage(db, "brief")["waits"] == 1 and usage(db, "brief")["calls"] == 1


def test_the_operator_endpoint_reports_usage_limits_and_waiting_jobs(client, auth, db, model, redis_conn):
    stub = model(llm_tokens_per_minute=50_000, llm_requests_per_minute=100, llm_user_daily_tokens=1)
    add_messages(db, "broke", "work", WORK_MESSAGES)
    wait_status(db, analyze(client, auth, "broke")["job"]["id"], "deferred")
    model(llm_user_daily_tokens=None)
    add_messages(db, "rich", "work", WORK_MESSAGES)
    wait_status(db, analyze(client, auth, "rich")["job"]["id"], "completed")

    assert client.get("/api/v1/admin/llm-usage").status_code == 401
    assert client.get("/api/v1/admin/llm-usage?days=0", headers=ADMIN).status_code == 422
    body = client.get("/api/v1/admin/llm-usage", headers=ADMIN).json

    assert body["limits"] == {
        "tokens_per_minute": 50_000,
        "requests_per_minute": 100,
        "user_daily_tokens": None,
        "window_seconds": 60,
    }
    (today,) = body["days"]
    answered = stub.answered()[0]
    assert today["day"] == datetime.now(UTC).date().isoformat() and today["family"] == "analysis"
    assert (today["calls"], today["tokens_in"], today["tokens_out"]) == (
        1,
        answered.tokens_in,
        answered.tokens_out,
    )
    assert today["cost_usd"] == pytest.approx((answered.tokens_in + 5 * answered.tokens_out) / 1e6)
    assert today["deferrals"] == 1
    assert body["window"]["tokens"] == answered.tokens and body["window"]["requests"] == 1
    assert body["analysis_jobs"] == {"waiting": 0, "deferred": 1}
    assert body["warnings"] == []
    figures = scrape(client)
    assert figures[("focus_analysis_jobs_waiting", (("reason", "budget"),))] == 1
    assert figures[("focus_llm_window", (("kind", "tokens"),))] == answered.tokens
    assert figures[("focus_llm_limit", (("kind", "tokens"),))] == 50_000
    assert ("focus_llm_limit", (("kind", "user_daily_tokens"),)) not in figures
