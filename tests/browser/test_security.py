"""What a browser does with the app's headers, in a real headless Chromium: Swagger UI works
offline, the pages' Content-Security-Policy stops an injected inline script and framing, and a
browser app on another origin may call the API only when CORS_ORIGINS allows its origin."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from focus_app import create_app
from focus_app.api.auth import issue_token
from tests.browser.conftest import offline_page
from tests.conftest import TEST_SECRET, make_settings

DESKTOP = {"width": 1280, "height": 900}


def serve(wsgi_app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def test_swagger_ui_renders_every_operation_offline(browser, base_url, app):
    """It was a blank page without internet: Swagger UI came from an unpinned CDN."""
    spec = app.test_client().get("/api/openapi.json").json
    operations = sum(len([m for m in item if m != "parameters"]) for item in spec["paths"].values())
    context, page, problems = offline_page(browser, base_url, "/api/docs", DESKTOP)
    try:
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator(".opblock").count() == operations
        assert "Focus analytics API" in page.inner_text(".info .title")
        page.locator(".opblock-summary").first.click()  # an operation opens
        page.wait_for_selector(".opblock-body", timeout=10_000)
        assert problems == []  # no console error, no CSP violation, no request off the app's origin
    finally:
        context.close()


INJECTED = b"<script>window.injected = 'ran'</script><img src=x onerror=\"window.injected='ran'\">"


@pytest.mark.parametrize("path", ["/dashboard", "/ops"])
def test_the_pages_csp_stops_an_injected_inline_script(browser, base_url, path):
    """The dashboard keeps a bearer token in the browser: markup that slipped into the page must
    not run. The app's own scripts still run (the page reaches its sign-in state)."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )

    def inject(route):
        original = route.fetch()
        body = original.body().replace(b"</body>", INJECTED + b"</body>")
        route.fulfill(response=original, body=body)

    page.route(base_url + path, inject)
    try:
        page.goto(base_url + path)
        page.wait_for_selector("#sign-in:not([hidden]), #key-form, form", timeout=15_000)
        assert page.evaluate("window.injected") is None
        assert len(violations) >= 2, violations  # the inline script and the inline handler
        assert all("script-src 'self'" in text for text in violations)
    finally:
        context.close()


@pytest.fixture(scope="module")
def framing_page() -> Iterator[str]:
    holder: dict[str, str] = {}

    @Request.application
    def page(request: Request) -> Response:
        return Response(f'<iframe id="f" src="{holder["target"]}"></iframe>', mimetype="text/html")

    url, server = serve(page)
    holder["url"] = url
    yield holder
    server.shutdown()


def test_another_site_cannot_frame_the_dashboard(browser, base_url, framing_page):
    framing_page["target"] = base_url + "/dashboard"
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(framing_page["url"])
        page.wait_for_load_state("load")
        (frame,) = page.main_frame.child_frames
        assert frame.url.startswith("chrome-error://"), frame.url
        assert page.frame_locator("#f").locator("#token").count() == 0
    finally:
        context.close()


# --- CORS ---------------------------------------------------------------------------------------

CLIENT_PAGE = """<!doctype html><title>web client</title><script>
window.call = async (api, token) => {
  try {
    const auth = {Authorization: 'Bearer ' + token};
    const read = await fetch(api + '/api/v1/focus-sessions/active', {headers: auth});
    const write = await fetch(api + '/api/v1/tasks', {
      method: 'POST',
      headers: {Authorization: 'Bearer ' + token, 'Content-Type': 'application/json'},
      body: JSON.stringify({title: 'From another origin'}),
    });
    return {read: read.status, write: write.status, requestId: read.headers.get('X-Request-ID')};
  } catch (error) {
    return {error: String(error)};
  }
};
</script>"""


@pytest.fixture(scope="module")
def cors_api(database_url, redis_url) -> Iterator[str]:
    """The API as a deployment with CORS_ORIGINS=http://127.0.0.1:* (any port of that host)."""
    api = create_app(make_settings(database_url, redis_url, cors_origins=("http://127.0.0.1:*",)))
    url, server = serve(api)
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def client_site() -> Iterator[int]:
    """A browser app on a port of its own (seed 001's web client)."""

    @Request.application
    def page(request: Request) -> Response:
        return Response(CLIENT_PAGE, mimetype="text/html")

    url, server = serve(page)
    yield int(url.rsplit(":", 1)[1])
    server.shutdown()


def call_from(browser, origin: str, api: str, user: str) -> dict:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(origin + "/")
        return page.evaluate(
            "([api, token]) => window.call(api, token)", [api, issue_token(TEST_SECRET, user)]
        )
    finally:
        context.close()


def tasks_of(app, user: str) -> list[str]:
    headers = {"Authorization": f"Bearer {issue_token(TEST_SECRET, user)}"}
    return [task["title"] for task in app.test_client().get("/api/v1/tasks", headers=headers).json["items"]]


def test_a_browser_app_on_an_allowed_origin_calls_the_api(browser, cors_api, client_site, app):
    """The preflight got a 401 and no CORS headers: a web client on another port could not call."""
    outcome = call_from(browser, f"http://127.0.0.1:{client_site}", cors_api, "web-client")

    assert (outcome.get("read"), outcome.get("write")) == (200, 201), outcome
    assert outcome["requestId"]  # an exposed header the page can read
    assert tasks_of(app, "web-client") == ["From another origin"]


def test_a_browser_app_on_another_origin_is_refused(browser, cors_api, client_site, app):
    """Same page, same port, host `localhost`: another origin, not in CORS_ORIGINS."""
    outcome = call_from(browser, f"http://localhost:{client_site}", cors_api, "web-client")

    assert "Failed to fetch" in outcome.get("error", ""), outcome
    assert tasks_of(app, "web-client") == []  # the preflight refused the write: nothing was written


def test_the_default_app_allows_no_other_origin(browser, base_url, client_site):
    """CORS_ORIGINS empty (production's default): same-origin only."""
    outcome = call_from(browser, f"http://127.0.0.1:{client_site}", base_url, "web-client")

    assert "Failed to fetch" in outcome.get("error", "")
