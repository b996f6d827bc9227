"""Operator control on /ops in a real headless Chromium: the running runs with their Cancel button,
and the bulk replay of dead letters (preview, replay, the recent replays, bad input)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from focus_app.models import JobRun, JobRunUnit
from focus_app.models.analysis import AnalysisJob
from focus_app.services.analysis import recovery
from focus_app.services.jobkit import runs
from tests.browser.test_dashboard import PHONE
from tests.browser.test_ops import open_ops
from tests.integration.factories import make_dead_letters, make_failed_analysis_job, make_run, make_user

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package").expect


def running_run(db, job_name: str, units: int) -> object:
    """A run as its planner leaves it: running, its units written and pending (no worker here)."""
    run = runs.start_run(db, job_name, "beat", slot="test-slot").run
    runs.add_units(db, run, [[f"user-{n}"] for n in range(units)])
    db.commit()
    return run.id


def test_cancel_stops_a_running_run_and_the_page_shows_it(browser, base_url, db):
    now = datetime.now(UTC)
    make_run(db, "focus.update_profiles", "success", started=now - timedelta(minutes=10), succeeded=3)
    run_id = running_run(db, "focus.update_profiles", 3)
    context, page, problems = open_ops(browser, base_url)
    try:
        row = page.locator(f"#running-body tr[data-run-id='{run_id}']")
        assert row.is_visible() and page.locator("#running-body tr").count() == 1
        assert "focus.update_profiles" in row.inner_text()
        assert "0 of 3 units" in row.locator("td[data-label=Progress]").inner_text()

        row.locator("button.cancel").click()
        row.locator(".badge.status-cancelled").wait_for()

        assert "3 units cancelled" in row.locator("td[data-label=Progress]").inner_text()
        db.rollback()
        assert db.get(JobRun, run_id).status == "cancelled"
        statuses = db.scalars(select(JobRunUnit.status).where(JobRunUnit.run_id == run_id)).all()
        assert statuses == ["cancelled"] * 3
        # After a refresh nothing is running, and the job's recent runs show the cancelled one.
        page.click("#refresh")
        page.wait_for_selector("body[data-state=ready]")
        assert page.is_visible("#running-empty")
        recent = page.locator("#recent-runs details[data-task='focus.update_profiles']")
        assert recent.locator(".strip i.status-cancelled").count() == 1
        assert (
            page.locator(
                "#jobs-body tr[data-task='focus.update_profiles'] td[data-label='Last run'] .badge"
            ).inner_text()
            == "cancelled"
        )
        assert problems == []
    finally:
        context.close()


def test_cancelling_a_run_that_just_finished_says_why(browser, base_url, db):
    run_id = running_run(db, "maintenance.consolidate_profiles", 1)
    context, page, problems = open_ops(browser, base_url)
    try:
        # It finishes (here: an operator elsewhere cancels it) while the page still shows it running.
        runs.cancel_run(db, run_id)
        db.commit()
        row = page.locator(f"#running-body tr[data-run-id='{run_id}']")
        row.locator("button.cancel").click()
        progress = row.locator("td[data-label=Progress]")
        expect(progress).to_contain_text("409")
        assert "only a running run can be cancelled" in progress.inner_text()
        assert row.locator("button.cancel").is_enabled()
        assert problems and all("status of 409" in problem for problem in problems)
    finally:
        context.close()


def test_bulk_replay_previews_then_replays_the_matching_dead_letters(browser, base_url, db):
    make_user(db, "alice")
    refused = make_failed_analysis_job(db, "alice")  # "provider refused: 401 invalid API key"
    make_dead_letters(db, "bob", ["work"], "LLMError: HTTP 429 Too Many Requests")
    make_dead_letters(db, "carol", ["study"], "LLMError: HTTP 429 Too Many Requests")
    # An earlier replay typed as `celery call analysis.replay` is listed too.
    earlier = recovery.replay_matching(
        db,
        recovery.ReplayFilter(error="nothing matches this"),
        dry_run=False,
        trigger="manual",
        task_id="cli-task",
        publish=lambda messages: [None for _ in messages],
    )
    context, page, problems = open_ops(browser, base_url, viewport=PHONE)
    try:
        replays = page.locator("#replays-body tr")
        assert replays.count() == 1 and "celery call" in replays.first.inner_text()
        assert "error nothing matches this" in replays.first.inner_text()
        assert page.is_disabled("#replay-run")

        page.fill("#replay-form input[name=error]", "http 429")
        page.click("#replay-preview")
        page.wait_for_selector("#replay-outcome:not([hidden])")
        assert page.inner_text("#replay-outcome").startswith("2 failed jobs match (error http 429)")
        assert page.locator("#replay-sample-body tr").count() == 2
        assert page.inner_text("#replay-run") == "Replay 2 jobs" and page.is_enabled("#replay-run")
        # Nothing changed by the preview.
        db.rollback()
        assert db.scalar(select(func.count()).where(AnalysisJob.status == "failed")) == 3

        # A changed filter must be previewed again before it can be replayed.
        page.fill("#replay-form input[name=context_type]", "study")
        assert page.is_disabled("#replay-run")
        page.click("#replay-preview")
        expect(page.locator("#replay-run")).to_have_text("Replay 1 job")
        page.click("#replay-run")
        expect(page.locator("#replay-outcome")).to_contain_text("Replayed")

        assert page.inner_text("#replay-outcome").startswith("Replayed 1 of 1 in 1 page · success · run ")
        page.wait_for_selector("body[data-state=ready]")
        newest = page.locator("#replays-body tr").first
        assert "this page / API" in newest.inner_text() and "1 of 1" in newest.inner_text()
        assert "error http 429, context_type study" in newest.inner_text()
        assert page.locator("#replays-body tr").count() == 2
        db.rollback()
        carol = db.scalars(select(AnalysisJob).where(AnalysisJob.user_id == "carol")).one()
        assert carol.status in ("pending", "processing", "completed")
        left = db.scalars(select(AnalysisJob.user_id).where(AnalysisJob.status == "failed")).all()
        assert sorted(left) == ["alice", "bob"]
        assert page.locator(f"#dead-body tr[data-job-id='{refused}']").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert earlier.run_id and problems == []
    finally:
        context.close()


def test_bulk_replay_bad_input_is_shown_with_the_field(browser, base_url):
    context, page, problems = open_ops(browser, base_url)
    try:
        page.fill("#replay-form input[name=context_type]", "Not A Context")
        page.click("#replay-preview")
        page.wait_for_selector("#replay-outcome.problem")
        message = page.inner_text("#replay-outcome")
        assert "422" in message and "context_type: lower-case letters" in message
        assert page.is_disabled("#replay-run")
        assert problems and all("status of 422" in problem for problem in problems)
    finally:
        context.close()
