"""The user's dashboard in a real headless Chromium: charts drawn from the JSON API, empty state,
phone width, no console errors, no request leaving the machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from focus_app.api.auth import issue_token
from focus_app.services.focus import profiles
from focus_app.services.intelligence import job as weekly_job
from focus_app.services.intelligence import weeks
from tests.browser.conftest import offline_page
from tests.conftest import TEST_SECRET
from tests.integration.factories import make_session, make_user

PHONE = {"width": 375, "height": 740}

# How many pixels of a canvas are drawn in a bar colour (not the white/grey of axes and labels).
COLOURED_PIXELS = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 200 && Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
  }
  return coloured;
}"""


def open_dashboard(browser, base_url, user_id, viewport=None):
    context, page, problems = offline_page(
        browser, base_url, "/dashboard", viewport or {"width": 1200, "height": 900}
    )
    page.fill("#token", issue_token(TEST_SECRET, user_id))
    page.click("#token-form button")
    page.wait_for_selector("body[data-state=ready]")
    return context, page, problems


@pytest.fixture
def seeded(db, app):
    """Sessions in the last days, a computed profile and a weekly brief, written by the same
    services the jobs call (the job paths have their own tests; no worker here, so these tests
    can run before the fault tests, which stop servers under a running worker)."""
    make_user(db, "alice")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for n in range(8):
        start = now.replace(hour=9) - timedelta(days=n + 1)
        make_session(db, "alice", start, 30 + n, score=4, completed=n % 4 != 0)
    profiles.compute_profiles(db, ["alice"], min_sessions=3)
    db.commit()
    week = weeks.week_just_ended(now, "UTC")
    weekly_job.generate_batch(db, app.extensions["redis"], ["alice"], week_of=week)
    return "alice"


def test_dashboard_draws_the_users_data(browser, base_url, seeded):
    context, page, problems = open_dashboard(browser, base_url, seeded)
    try:
        assert page.is_hidden("#empty-state")
        assert page.evaluate(COLOURED_PIXELS, "chart-days") > 200
        assert page.evaluate(COLOURED_PIXELS, "chart-hours") > 200
        assert page.inner_text("#peak-hours") == "09:00"
        assert "%" in page.inner_text("#completion")
        assert page.inner_text("#brief-week").startswith("Week of ")
        assert page.locator("#brief-insights li").count() > 0
        # The token is kept: a reload shows the data without pasting it again.
        page.reload()
        page.wait_for_selector("body[data-state=ready]")
        assert page.evaluate(COLOURED_PIXELS, "chart-days") > 200
        assert problems == []
    finally:
        context.close()


def test_new_user_sees_the_empty_state_on_a_phone(browser, base_url):
    context, page, problems = open_dashboard(browser, base_url, "newcomer", viewport=PHONE)
    try:
        assert page.is_visible("#empty-state")
        assert "No focus sessions yet" in page.inner_text("#empty-state")
        assert page.evaluate(COLOURED_PIXELS, "chart-days") == 0
        # Phone width: one column, nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        box = page.locator("#chart-days").bounding_box()
        assert 0 < box["width"] <= PHONE["width"]
        assert problems == []
    finally:
        context.close()


def test_a_bad_token_asks_for_a_new_one(browser, base_url):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(base_url + "/dashboard")
        page.fill("#token", "not-a-token")
        page.click("#token-form button")
        page.wait_for_selector("body[data-state=sign-in] #error:not([hidden])")
        assert "not accepted" in page.inner_text("#error")
        assert page.is_hidden("#content")
        assert page.evaluate("localStorage.getItem('focus.token')") is None
    finally:
        context.close()
