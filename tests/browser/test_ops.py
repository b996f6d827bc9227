"""The operator page in a real headless Chromium: periodic jobs, recent runs, the success-rate
chart, the retry queue and the dead letters drawn from the admin API; Replay re-queues a dead
letter; a wrong key is a readable error; phone width; no console errors, nothing off the machine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from beat_schedule import build_beat_schedule
from focus_app.models.analysis import AnalysisJob, ChatMessage
from focus_app.services.analysis import jobs as analysis_jobs
from focus_app.services.analysis import run as analysis_run
from focus_app.services.analysis import triggers
from focus_app.services.analysis.analyser import LLMAnalyser
from focus_app.services.intelligence import retry_queue
from focus_app.services.jobkit.llm import Completion, ProviderBackoff, Throttled
from focus_app.services.jobkit.llm_flow import Flow, LimitedProvider, Limits, record_usage
from tests.browser.conftest import offline_page
from tests.browser.test_dashboard import COLOURED_PIXELS, PHONE
from tests.conftest import TEST_ADMIN_KEY
from tests.integration.factories import make_failed_analysis_job, make_run, make_user

RESOURCE_403 = "Failed to load resource: the server responded with a status of 403"


def open_ops(browser, base_url, key=TEST_ADMIN_KEY, viewport=None, state="ready"):
    context, page, problems = offline_page(
        browser, base_url, "/ops", viewport or {"width": 1280, "height": 900}
    )
    page.wait_for_selector("body[data-state=sign-in]")
    page.fill("#admin-key", key)
    page.click("#key-form button")
    page.wait_for_selector(f"body[data-state={state}]")
    return context, page, problems


@pytest.fixture
def seeded(db):
    """Runs of two jobs, a user in the retry queue and a dead-lettered analysis job, written by
    the services the jobs use (no worker: the replayed job stays queued for the assertions)."""
    now = datetime.now(UTC)
    for n, status in enumerate(["success", "success", "failed", "success"]):
        make_run(
            db,
            "focus.update_profiles",
            status,
            started=now - timedelta(minutes=5 * (4 - n)),
            succeeded=3,
            failed=1 if status == "failed" else 0,
            error="1 of 4 batches failed" if status == "failed" else None,
        )
    make_run(db, "maintenance.consolidate_profiles", "success", started=now - timedelta(minutes=30))
    make_user(db, "bob")
    retry_queue.enqueue_retries(
        db, {"bob": "unknown timezone 'Mars/Olympus'"}, date(2026, 1, 5), retry_queue.RetryPolicy()
    )
    db.commit()
    make_user(db, "alice")
    return make_failed_analysis_job(db, "alice")


def test_the_page_draws_jobs_runs_retry_queue_and_dead_letters(browser, base_url, app, seeded):
    context, page, problems = open_ops(browser, base_url)
    try:
        entries = build_beat_schedule(app.extensions["settings"])
        jobs = page.locator("#jobs-body tr")
        assert jobs.count() == len(entries)
        profiles = page.locator("#jobs-body tr[data-task='focus.update_profiles']")
        assert profiles.is_visible()
        assert profiles.locator("td[data-label='Success rate']").inner_text() == "75% of 4"
        assert profiles.locator("td[data-label='Last run'] .badge").inner_text() == "success"
        assert page.locator(
            "#jobs-body tr[data-task='intelligence.weekly'] td[data-label='Next run']"
        ).inner_text()
        assert "every 5 minutes" in profiles.inner_text()
        # The chart's canvas has bars drawn in colour (green for 100%, red below 80%).
        assert page.evaluate(COLOURED_PIXELS, "chart-success") > 200
        assert page.is_hidden("#chart-empty")
        # Recent runs: a strip of coloured marks per job; opening it shows the runs' rows.
        recent = page.locator("#recent-runs details[data-task='focus.update_profiles']")
        assert recent.locator(".strip i").count() == 4
        assert recent.locator(".strip i").first.bounding_box()["width"] > 0
        recent.locator("summary").click()
        rows = recent.locator("tbody tr")
        assert rows.count() == 4 and rows.first.is_visible()
        assert "1 of 4 batches failed" in recent.inner_text()
        # Retry queue and dead letters.
        retry = page.locator("#retry-body tr")
        assert retry.count() == 1 and retry.first.is_visible()
        assert "unknown timezone 'Mars/Olympus'" in retry.first.inner_text()
        assert "0 of 3" in retry.first.inner_text()
        dead = page.locator(f"#dead-body tr[data-job-id='{seeded}']")
        assert dead.is_visible() and "provider refused" in dead.inner_text()
        assert dead.locator("button.replay").is_enabled()
        # Links beside the page: Flower (its configured address) and the user dashboard.
        assert page.get_attribute("#flower-link", "href") == app.extensions["settings"].flower_url
        assert page.get_attribute("header a[href='/dashboard']", "href") == "/dashboard"
        assert problems == []
    finally:
        context.close()


def test_replay_requeues_the_dead_letter_and_shows_its_task(browser, base_url, db, seeded):
    context, page, problems = open_ops(browser, base_url)
    try:
        row = page.locator(f"#dead-body tr[data-job-id='{seeded}']")
        row.locator("button.replay").click()
        shown = row.locator(".replayed")
        shown.wait_for()
        task_id = shown.inner_text().strip().removeprefix("task ")
        assert row.locator(".badge").inner_text() == "pending"

        db.rollback()
        job = db.scalars(select(AnalysisJob).where(AnalysisJob.id == seeded)).one()
        # Out of the dead-letter state, published under the task id the page shows: still queued
        # (pending, fresh attempt budget), or already run on its fresh attempt when an earlier
        # suite in this session started the in-process worker.
        assert job.celery_task_id == task_id
        assert (job.status, job.attempts) in {("pending", 0), ("processing", 1), ("completed", 1)}
        # A refresh no longer lists it as a dead letter.
        page.click("#refresh")
        page.wait_for_selector("body[data-state=ready]")
        assert page.is_visible("#dead-empty")
        assert problems == []
    finally:
        context.close()


def test_a_wrong_key_is_a_readable_error_and_asks_again(browser, base_url):
    context, page, problems = open_ops(browser, base_url, key="not-the-admin-key", state="sign-in")
    try:
        assert page.is_visible("#error")
        message = page.inner_text("#error")
        assert "not accepted" in message and "403" in message and "wrong API key" in message
        assert page.is_visible("#key-form") and page.is_hidden("#content")
        assert page.evaluate("sessionStorage.getItem('focus.adminKey')") is None
        # The browser reports the rejected requests themselves; nothing else went wrong.
        assert problems and all(problem.startswith(RESOURCE_403) for problem in problems)
    finally:
        context.close()


def test_empty_state_on_a_phone_and_the_key_kept_until_forgotten(browser, base_url):
    context, page, problems = open_ops(browser, base_url, viewport=PHONE)
    try:
        assert page.is_visible("#retry-empty") and page.is_visible("#dead-empty")
        assert page.is_visible("#llm-empty") and "Shared limit: none" in page.inner_text("#llm-now")
        assert page.is_visible("#chart-empty")
        assert page.locator("#recent-runs details").first.inner_text().endswith("0 recent runs")
        assert "never recorded" in page.inner_text("#jobs-body")
        # Phone width: rows are stacked cards, nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        row = page.locator("#jobs-body tr").first.bounding_box()
        assert 0 < row["width"] <= PHONE["width"]
        assert page.locator("#chart-success").bounding_box()["width"] <= PHONE["width"]
        # The key survives a reload of the tab, and "Forget key" removes it.
        page.reload()
        page.wait_for_selector("body[data-state=ready]")
        page.click("#forget-key")
        assert page.is_visible("#key-form")
        assert page.evaluate("sessionStorage.getItem('focus.adminKey')") is None
        page.reload()
        page.wait_for_selector("body[data-state=sign-in]")
        assert problems == []
    finally:
        context.close()


def test_the_dashboard_links_to_the_operator_page(browser, base_url):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(base_url + "/dashboard")
        page.click("header a[href='/ops']")
        page.wait_for_selector("body[data-state=sign-in] #key-form")
        assert page.url == base_url + "/ops"
    finally:
        context.close()


class _Model:
    """A provider's wire format that answers, or asks every caller to back off for 30 s."""

    name = "stub"

    def __init__(self, backing_off: bool = False):
        self.backing_off = backing_off

    def send(self, system: str, prompt: str, max_tokens: int) -> Completion:
        if self.backing_off:
            raise ProviderBackoff("stub answered HTTP 429: slow down", 30.0)
        return Completion("{}", "stub", 100, 20, 0.0)


def test_model_usage_shows_the_days_the_limit_and_what_waits(browser, base_url, app, db):
    """Written through the flow control itself: an analysis deferred by a user's daily budget, a
    provider's 429 that makes every caller wait; and a past day of brief stories in the ledger."""
    statements, redis_conn = app.extensions["db"].statements, app.extensions["redis"]
    make_user(db, "spender")
    rules = analysis_jobs.Rules()
    db.execute(
        insert(ChatMessage),
        [
            {"user_id": "spender", "context_type": "work", "content": f"note {n}"}
            for n in range(rules.min_messages)
        ],
    )
    db.commit()
    job = triggers.request_analysis(db, "spender", "work", "manual", rules).job
    over_budget = LimitedProvider(
        _Model(), Flow(redis_conn, statements, Limits(user_daily_tokens=1)), "analysis"
    )
    assert analysis_run.run_job(db, job.id, LLMAnalyser(over_budget), rules).status == "deferred"
    backing_off = LimitedProvider(
        _Model(backing_off=True), Flow(redis_conn, statements, Limits()), "analysis"
    )
    with pytest.raises(Throttled):
        backing_off.complete("system", "prompt", max_tokens=50)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    record_usage(statements, yesterday, "brief", calls=3, tokens_in=1200, tokens_out=400, cost_usd=0.012)

    context, page, problems = open_ops(browser, base_url)
    try:
        now = page.inner_text("#llm-now")
        assert "Shared limit: none" in now and "per user and day: unlimited" in now
        assert "This window: 0 tokens, 1 request." in now  # the refused call still counts as a request
        assert "Calls waiting for their turn: analysis 1" in now
        assert "deferred by the daily budget: 1" in now
        assert "Provider back-off: every worker waits" in now
        today = page.locator("#llm-body tr[data-family=analysis]")
        assert today.is_visible()
        cells = {
            label: today.locator(f"td[data-label='{label}']").inner_text()
            for label in ("Calls", "Waited", "Provider 429s", "Deferred")
        }
        assert cells == {"Calls": "0", "Waited": "1", "Provider 429s": "1", "Deferred": "1"}
        brief = page.locator(f"#llm-body tr[data-family=brief][data-day='{yesterday.isoformat()}']")
        assert brief.locator("td[data-label='Tokens in']").inner_text() == "1,200"
        assert brief.locator("td[data-label='Cost']").inner_text() == "$0.0120"
        assert page.is_hidden("#llm-empty")
        assert problems == []
    finally:
        context.close()
