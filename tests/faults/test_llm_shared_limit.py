"""The proof of issue 15's flow control: four `celery -A workers worker` processes analyse against
the loopback model stub under one shared limit.

The limiter's window is shortened to WINDOW seconds (LLM_LIMIT_WINDOW_SECONDS, a setting only tests
change): the same code and the same numbers, so "per minute" is exercised in seconds. The stub
counts what it saw per window and in any sliding window, answers one 429 with Retry-After in the
middle, and each user's prompts carry a marker so their tokens can be told apart.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from focus_app.models.analysis import AnalysisJob, ProfileInterpretation
from focus_app.models.llm import LLMUsageDaily
from focus_app.services.analysis.analyser import SYSTEM_PROMPT, build_prompt
from focus_app.services.jobkit.llm_flow import budget_day, most_tokens
from tests.faults.harness import figure, wait_for
from tests.integration.llm_stub import LLMStub
from tests.integration.test_analysis_jobs import WORK_MESSAGES, add_messages

pytestmark = pytest.mark.faults

WORKERS = 4
WINDOW = 4  # seconds: the limits below hold per window
USERS = 14  # one analysis each
SPENDER_CONTEXTS = ("work", "home", "study", "sport")  # one user asks for four
RETRY_AFTER = 2.0
SLACK = 1.02  # the bound: never more than the limit plus 2 %


def messages_of(user: str, context: str) -> list[str]:
    return [f"{message} [{user} {context}]" for message in WORK_MESSAGES]


def most_of(user: str, context: str) -> int:
    return most_tokens(SYSTEM_PROMPT, build_prompt(context, messages_of(user, context)), 1024)


def test_four_workers_share_the_limit_wait_without_attempts_and_stop_at_the_budget(faults, auth_headers):
    users = [f"user{n:02d}" for n in range(USERS)]
    most = max(most_of(user, "work") for user in users)
    spender_most = max(most_of("spender", context) for context in SPENDER_CONTEXTS)
    token_limit = 2 * most + 1000  # two calls in flight, or one and a few answered ones
    request_limit = 5
    budget = spender_most + 100  # one analysis a day: a second's most never fits beside the first
    stub = LLMStub()
    stub.usage_from_prompt = True
    stub.answer_tokens = 800  # about 1,200 tokens a call: five answered calls fill a window
    stub.delay = 0.2  # a model takes its time: calls overlap across the workers
    stub.retry_after = RETRY_AFTER
    stub.script = ["good"] * 6 + ["rate_limited"]
    env = {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": stub.url,
        "LLM_MODEL": "stub",
        "LLM_COST_INPUT_PER_MTOK": "3",
        "LLM_COST_OUTPUT_PER_MTOK": "15",
        "LLM_TOKENS_PER_MINUTE": str(token_limit),
        "LLM_REQUESTS_PER_MINUTE": str(request_limit),
        "LLM_USER_DAILY_TOKENS": str(budget),
        "LLM_LIMIT_WINDOW_SECONDS": str(WINDOW),
    }
    try:
        workers = [faults.worker(f"llm{n}", "analysis", concurrency=1, **env) for n in range(WORKERS)]
        for worker in workers:
            wait_for(
                lambda worker=worker: " ready." in worker.output(), 90, what=f"{worker.log_path.name} ready"
            )
        db = faults.db()
        for user in users:
            add_messages(db, user, "work", messages_of(user, "work"))
        for context in SPENDER_CONTEXTS:
            add_messages(db, "spender", context, messages_of("spender", context))
        client = faults.app.test_client()
        started = time.monotonic()
        asked = [(user, "work") for user in users] + [("spender", context) for context in SPENDER_CONTEXTS]
        ids = {}
        for user, context in asked:
            response = client.post(
                "/api/v1/profile/analyze", json={"context_type": context}, headers=auth_headers(user)
            )
            assert response.status_code == 202, response.json
            ids[(user, context)] = response.json["job"]["id"]

        def settled():
            db.rollback()
            statuses = db.scalars(select(AnalysisJob.status)).all()
            return len(statuses) == len(asked) and set(statuses) <= {"completed", "deferred", "failed"}

        wait_for(settled, 180, what="every job completed or deferred")
        elapsed = time.monotonic() - started
        db.rollback()
        jobs = {(job.user_id, job.context_type): job for job in db.scalars(select(AnalysisJob))}

        # No job failed because of the limit, and waiting used up no attempt.
        others = [jobs[(user, "work")] for user in users]
        assert [(job.status, job.outcome, job.attempts) for job in others] == [
            ("completed", "analysed", 1)
        ] * USERS
        assert sum(job.waits for job in others) > 0
        # The stub never saw more than the limit (plus 2 %) in any window, sliding or fixed.
        busiest_calls, busiest_tokens = stub.busiest(WINDOW)
        assert busiest_calls <= request_limit * SLACK and busiest_tokens <= token_limit * SLACK
        for calls, tokens in stub.per_window(WINDOW).values():
            assert calls <= request_limit * SLACK and tokens <= token_limit * SLACK
        # The 429 (answered stub.delay after it arrived) paused every worker for its Retry-After;
        # calls admitted before it came back may still arrive just after it.
        (refused,) = [seen for seen in stub.seen if seen.status == 429]
        answered_at = refused.at + stub.delay
        paused = [
            seen for seen in stub.seen if answered_at + 0.25 < seen.at < answered_at + RETRY_AFTER - 0.05
        ]
        assert paused == []
        # The user over budget: one analysis ran, three are deferred with nothing spent past it.
        spender = [jobs[("spender", context)] for context in SPENDER_CONTEXTS]
        assert sorted(job.status for job in spender) == ["completed"] + ["deferred"] * 3
        spent_at_stub = sum(seen.tokens for seen in stub.seen if "[spender " in seen.prompt)
        assert 0 < spent_at_stub <= budget
        _, next_day = budget_day(datetime.now(UTC))
        for job in spender:
            if job.status != "deferred":
                continue
            assert (job.attempts, job.tokens_in, job.tokens_out) == (0, 0, 0)
            assert job.next_attempt_at == next_day and job.waiting_for.startswith("LLM_USER_DAILY_TOKENS")
            body = client.get(f"/api/v1/profile/analyze/{job.id}", headers=auth_headers("spender")).json
            assert body["status"] == "deferred" and body["waiting_for"] == job.waiting_for
        stored = db.scalars(
            select(ProfileInterpretation.context_type).where(ProfileInterpretation.user_id == "spender")
        )
        assert len(stored.all()) == 1
        # The usage figures agree with what the provider saw.
        usage = db.scalars(select(LLMUsageDaily)).one()
        answered = stub.answered()
        assert (usage.family, usage.calls, usage.backoffs, usage.deferrals) == (
            "analysis",
            len(answered),
            1,
            3,
        )
        assert usage.tokens_in + usage.tokens_out == sum(seen.tokens for seen in answered)
        assert usage.waits > 0
    finally:
        stub.close()

    figure("llm flow: jobs analysed by 4 worker processes", len(answered), "jobs")
    figure("llm flow: wall time (first publish to last job settled)", elapsed)
    figure("llm flow: busiest window, requests / limit", busiest_calls / request_limit * 100, "%")
    figure("llm flow: busiest window, tokens / limit", busiest_tokens / token_limit * 100, "%")
    figure("llm flow: model calls that waited for their turn", usage.waits, "calls")
    figure("llm flow: jobs handed back to the queue (no attempt used)", sum(j.waits for j in others), "times")
