"""Checks for arguments typed by hand (`celery call --args/--kwargs`).

A bad argument fails that task with a message naming it; it is never retried and never takes
the worker down.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

MAX_USER_ID_LENGTH = 128


class InvalidTaskArguments(ValueError):
    pass


def user_id_list(value: Any, name: str = "user_ids") -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and 0 < len(item) <= MAX_USER_ID_LENGTH for item in value
    ):
        raise InvalidTaskArguments(
            f"{name} must be a list of user id strings (1 to {MAX_USER_ID_LENGTH} characters), "
            f"got {value!r:.200}"
        )
    return value


def optional_user_id(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_USER_ID_LENGTH:
        raise InvalidTaskArguments(
            f"{name} must be a user id string (1 to {MAX_USER_ID_LENGTH} characters), got {value!r:.100}"
        )
    return value


def optional_uuid(value: Any, name: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidTaskArguments(f"{name} must be a UUID, got {value!r:.100}") from None


def optional_non_negative_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidTaskArguments(f"{name} must be a non-negative integer, got {value!r:.100}")
    return value


def one_of(value: Any, name: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidTaskArguments(f"{name} must be one of {', '.join(allowed)}, got {value!r:.100}")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidTaskArguments(f"{name} must be true or false, got {value!r:.100}")
    return value
