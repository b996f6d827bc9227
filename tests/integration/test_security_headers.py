"""Security headers on every answer, the pages' Content-Security-Policy, CORS preflights, and the
API docs served from the project (browser-level checks: tests/browser/test_security.py)."""

from __future__ import annotations

import pytest

from focus_app import create_app
from tests.conftest import TEST_ADMIN_KEY, make_settings
from tests.integration.openapi_ops import select

PAGES = ["/dashboard", "/ops", "/api/docs"]
ALLOWED = "http://localhost:3000"


def csp(response) -> dict[str, str]:
    directives = (
        part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";")
    )
    return {name: value for name, value in directives}


@pytest.mark.parametrize("path", PAGES)
def test_pages_allow_only_their_own_scripts_and_refuse_framing(client, path):
    response = client.get(path)

    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = csp(response)
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert policy["default-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in response.get_data(as_text=True)  # every script is a file


def test_the_api_docs_page_and_its_files_come_from_the_app(client):
    page = client.get("/api/docs").get_data(as_text=True)

    assert "cdn" not in page.lower() and "https://" not in page
    for asset in ("/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css"):
        assert asset in page
        response = client.get(asset)
        assert response.status_code == 200 and len(response.data) > 10_000
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("op", select(lambda op: True))
def test_every_api_answer_says_nosniff_and_cannot_be_framed(client, auth, op):
    headers = {"X-API-Key": TEST_ADMIN_KEY, **auth("headers")}

    response = client.open(op.path(), method=op.method, json={}, headers=headers)

    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert csp(response) == {"default-src": "'none'", "frame-ancestors": "'none'"}


@pytest.mark.parametrize(
    "path", ["/api/openapi.json", "/metrics", "/static/web/dashboard.js", "/no-such-page", "/api/v1/health"]
)
def test_other_answers_say_nosniff_too(client, path):
    assert client.get(path).headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture(scope="module")
def cors_client(test_settings):
    app = create_app(
        make_settings(
            test_settings.database_url, test_settings.redis_url, cors_origins=(ALLOWED, "http://127.0.0.1:*")
        )
    )
    return app.test_client()


def preflight(client, path: str, origin: str, method: str = "POST"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.mark.parametrize("op", select(lambda op: True))
def test_a_preflight_from_an_allowed_origin_needs_no_token(cors_client, op):
    """It got a 401 (the auth hook ran first) and no CORS headers."""
    response = preflight(cors_client, op.path(), ALLOWED, op.method)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert op.method in response.headers["Access-Control-Allow-Methods"]
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert "x-api-key" in allowed_headers
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3001",
        "https://localhost:3000",
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ],
)
def test_a_disallowed_origin_gets_no_allow_header(cors_client, origin):
    response = preflight(cors_client, "/api/v1/tasks", origin)
    actual = cors_client.get("/api/v1/health", headers={"Origin": origin})

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in actual.headers


def test_a_port_wildcard_allows_any_port_of_that_host_only(cors_client, auth):
    for origin in ("http://127.0.0.1:5173", "http://127.0.0.1:8080", "http://127.0.0.1"):
        response = cors_client.get(
            "/api/v1/focus-sessions/active", headers={"Origin": origin, **auth("cors")}
        )
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    assert (
        "Access-Control-Allow-Origin"
        not in cors_client.get("/api/v1/health", headers={"Origin": "http://127.0.0.1:80x"}).headers
    )


def test_a_preflight_does_not_authenticate_the_real_request(cors_client):
    """The preflight passes without a token; the request it announces still needs one."""
    assert preflight(cors_client, "/api/v1/tasks", ALLOWED).status_code == 200

    real = cors_client.post("/api/v1/tasks", json={"title": "x"}, headers={"Origin": ALLOWED})

    assert real.status_code == 401
    assert real.headers["Access-Control-Allow-Origin"] == ALLOWED  # the page may read the 401


def test_without_cors_origins_no_origin_is_allowed(client):
    response = preflight(client, "/api/v1/tasks", ALLOWED)

    assert "Access-Control-Allow-Origin" not in response.headers
