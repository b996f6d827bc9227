"""Bearer JWT authentication (PyJWT). The `sub` claim is the user id."""

from __future__ import annotations

import hmac
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from flask import g, request
from flask_smorest import abort

from focus_app import logs
from focus_app.extensions import db_session, settings
from focus_app.services.focus_sessions import ensure_user

MAX_USER_ID_LENGTH = 128


def require_user() -> None:
    """before_request hook for user blueprints: sets g.user_id or answers 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        _unauthorized("missing bearer token", "invalid_request")
    config = settings()
    try:
        claims = jwt.decode(
            token.strip(),
            config.jwt_secret,
            algorithms=[config.jwt_algorithm],
            audience=config.jwt_audience,
            issuer=config.jwt_issuer,
            options={"require": ["sub", "exp"], "verify_aud": config.jwt_audience is not None},
        )
    except jwt.ExpiredSignatureError:
        _unauthorized("token expired")
    except jwt.InvalidTokenError as exc:
        _unauthorized(f"invalid token: {exc}")
    user_id = claims["sub"]
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID_LENGTH:
        _unauthorized(f"invalid token: sub must be a string of 1 to {MAX_USER_ID_LENGTH} characters")
    ensure_user(db_session(), user_id, _valid_zone(claims.get("zoneinfo")))
    g.user_id = user_id
    logs.bind(user_id=user_id)


def current_user_id() -> str:
    return g.user_id


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
    """Honour the OIDC `zoneinfo` claim for a new user when it names a real timezone."""
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
    """before_request hook for admin blueprints: X-API-Key, compared in constant time."""
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
