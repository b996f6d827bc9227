"""Bearer JWT authentication (PyJWT). The `sub` claim is the user id."""

from __future__ import annotations

import functools
import hmac
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from flask import current_app, g, request
from flask_smorest import abort

from focus_app import logs
from focus_app.extensions import db_session, settings
from focus_app.services.focus.users import ensure_user, user_id_problem

View = TypeVar("View", bound=Callable[..., Any])
TOKEN_CACHE_SIZE = 10_000


def require_user() -> None:
    """before_request hook for user blueprints: sets g.user_id or answers 401. A CORS preflight
    carries no credentials by design and runs no view: it passes."""
    if request.method == "OPTIONS":
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        _unauthorized("missing bearer token", "invalid_request")
    config = settings()
    try:
        claims = _verified_claims(
            token.strip(), config.jwt_secret, config.jwt_algorithm, config.jwt_audience, config.jwt_issuer
        )
    except jwt.InvalidTokenError as exc:
        _unauthorized(f"invalid token: {exc}")
    now = time.time()
    if claims["exp"] <= now:
        _unauthorized("token expired")
    if claims.get("nbf", now) > now:
        _unauthorized("invalid token: The token is not yet valid (nbf)")
    user_id = claims["sub"]
    problem = user_id_problem(user_id)
    if problem:
        _unauthorized(f"invalid token: sub {problem}")
    g.user_id = user_id
    g.token_claims = claims
    logs.bind(user_id=user_id)
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, "handles_user_row", False):
        ensure_user(db_session(), user_id, new_user_timezone())


def handles_user_row(view: View) -> View:
    """For a view that creates the caller's user row in its own statement (or needs none): the
    hook then skips its read of the users table, one round trip less on the busiest endpoints."""
    view.handles_user_row = True  # type: ignore[attr-defined]
    return view


@functools.lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _verified_claims(
    token: str, secret: str, algorithm: str, audience: str | None, issuer: str | None
) -> dict[str, Any]:
    """Signature and claims checked once per token and process; the time claims (exp, nbf) are
    checked by the caller on every request. Rejected tokens are not cached."""
    claims = jwt.decode(
        token,
        secret,
        algorithms=[algorithm],
        audience=audience,
        issuer=issuer,
        options={
            "require": ["sub", "exp"],
            "verify_aud": audience is not None,
            "verify_exp": False,
            "verify_nbf": False,
        },
    )
    for claim in ("exp", "nbf"):
        value = claims.get(claim, 0)
        # NaN compares false with everything: `exp: NaN` would never expire.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise jwt.InvalidTokenError(f"{claim} must be a finite number")
    return claims


def current_user_id() -> str:
    return g.user_id


def new_user_timezone() -> str | None:
    """The OIDC `zoneinfo` claim, when it names a real timezone: a new user starts in it."""
    return _valid_zone(g.token_claims.get("zoneinfo"))


def issue_token(
    secret: str,
    user_id: str,
    *,
    hours: float = 24 * 30,
    algorithm: str = "HS256",
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """A token for development and tests; production tokens come from the identity provider."""
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + int(hours * 3600)}
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=algorithm)


def _valid_zone(name: object) -> str | None:
    if not isinstance(name, str) or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _unauthorized(message: str, error: str = "invalid_token") -> None:
    abort(401, message=message, headers={"WWW-Authenticate": f'Bearer error="{error}"'})


def require_admin() -> None:
    """before_request hook for admin blueprints: X-API-Key, compared in constant time (a CORS
    preflight passes, as for users)."""
    if request.method == "OPTIONS":
        return
    supplied = request.headers.get("X-API-Key", "")
    if not supplied:
        abort(
            401, message="missing X-API-Key header", headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'}
        )
    if not hmac.compare_digest(supplied.encode(), settings().admin_api_key.encode()):
        abort(403, message="wrong API key")
    g.admin = True


def is_admin_request() -> bool:
    return "X-API-Key" in request.headers
