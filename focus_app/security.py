"""Response headers every answer carries, and CORS for the API: one after_request, one place.

- Every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy`.
- HTML pages (/dashboard, /ops, /api/docs): a Content-Security-Policy that allows scripts, styles,
  images and connections from this origin only (no inline script, no eval, no CDN) and no framing.
  The dashboard keeps a bearer token in the browser: an injected script must have nowhere to run.
  Everything else answers `default-src 'none'; frame-ancestors 'none'`.
- CORS (`CORS_ORIGINS`): a request under /api/ from an allowed origin gets that origin back in
  `Access-Control-Allow-Origin`; a preflight (OPTIONS) is answered without credentials (the
  auth hooks let OPTIONS pass and no view runs); any other origin gets no allow header, so the
  browser refuses to hand the answer to its page. Tokens travel in headers, never cookies, so
  credentials mode is not needed.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-ID"
CORS_EXPOSED = "Retry-After, X-Request-ID, Content-Disposition"
CORS_MAX_AGE_SECONDS = 600


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """`origin` is one of `allowed`, where `scheme://host:*` stands for any port of that host."""
    for entry in allowed:
        if entry.endswith(":*"):
            base = entry[:-2]
            if origin == base or (origin.startswith(base + ":") and origin[len(base) + 1 :].isdigit()):
                return True
        elif origin == entry:
            return True
    return False


def register_headers(app: Flask, cors_origins: tuple[str, ...]) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "same-origin"
        headers["Content-Security-Policy"] = PAGE_POLICY if response.mimetype == "text/html" else OTHER_POLICY
        if request.path.startswith("/api/") and cors_origins:
            _cors(response, cors_origins)
        return response

    del security_headers


def _cors(response: Response, allowed: tuple[str, ...]) -> None:
    response.vary.add("Origin")
    origin = request.headers.get("Origin", "")
    if not origin or not origin_allowed(origin, allowed):
        return
    headers = response.headers
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers["Access-Control-Allow-Methods"] = CORS_METHODS
        headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
