"""Checks for task arguments, typed by hand (`celery call --args/--kwargs`) or sent by the app.

Every parameter name a task may have is checked here, once, by the base task before the task
runs (workers/base.py). A bad argument fails that task with a message naming it; it is never
retried and never takes the worker down.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from focus_app.services.analysis.jobs import CONTEXT_TYPE_PATTERN, CONTEXT_TYPE_RULE
from focus_app.services.focus.users import user_id_problem
from focus_app.services.intelligence.weeks import week_of_problem
from focus_app.services.jobkit.fanout import Unit

TRIGGERS = ("beat", "manual", "api")
ENTITY_TYPES = ("user", "bot")


class InvalidTaskArguments(ValueError):
    pass


def user_id_list(value: Any, name: str = "user_ids") -> list[str]:
    if not isinstance(value, list):
        raise InvalidTaskArguments(f"{name} must be a list of user id strings, got {value!r:.200}")
    for index, item in enumerate(value):
        user_id(item, f"{name}[{index}]")
    return value


def user_id(value: Any, name: str) -> str:
    problem = user_id_problem(value)
    if problem:
        raise InvalidTaskArguments(f"{name} {problem}, got {value!r:.100}")
    return value


def a_uuid(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidTaskArguments(f"{name} must be a UUID, got {value!r:.100}") from None


def whole_number(low: int, high: int) -> Callable[[Any, str], int]:
    """An integer in [low, high]: beyond its range a number overflows a date or a column later,
    inside the task, as an error that names nothing."""

    def check(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidTaskArguments(
                f"{name} must be a whole number from {low} to {high}, got {value!r:.100}"
            )
        return value

    return check


def one_of(allowed: Iterable[str]) -> Callable[[Any, str], str]:
    choices = tuple(allowed)

    def check(value: Any, name: str) -> str:
        if value not in choices:
            raise InvalidTaskArguments(f"{name} must be one of {', '.join(choices)}, got {value!r:.100}")
        return value

    return check


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidTaskArguments(f"{name} must be true or false, got {value!r:.100}")
    return value


def task_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidTaskArguments(f"{name} must be a task id string, got {value!r:.100}")
    return value


def monday(value: Any, name: str) -> date:
    """A week's Monday, YYYY-MM-DD; whether the week has ended is the caller's check."""
    try:
        week = date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidTaskArguments(f"{name} must be a date YYYY-MM-DD, got {value!r:.100}") from None
    if week.isoweekday() != 1:
        raise InvalidTaskArguments(
            f"{name} must be a Monday (the first day of an ISO week), got {value!r:.100}"
        )
    return week


def moment(value: Any, name: str) -> datetime:
    """An ISO 8601 date and time with its offset (a time without one names no moment), in UTC."""
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        raise InvalidTaskArguments(
            f"{name} must be an ISO 8601 date and time with an offset, e.g. 2026-01-05T00:00:00+00:00, "
            f"got {value!r:.100}"
        ) from None


def text_piece(value: Any, name: str) -> str:
    """Text to search for: 1 to 500 characters PostgreSQL can compare (no NUL, no lone surrogate)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 500
        or "\x00" in value
        or any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    ):
        raise InvalidTaskArguments(
            f"{name} must be a text of 1 to 500 characters without NUL or lone surrogates, got {value!r:.100}"
        )
    return value


def context_type(value: Any, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(CONTEXT_TYPE_PATTERN, value):
        raise InvalidTaskArguments(f"{name} must be {CONTEXT_TYPE_RULE}, got {value!r:.100}")
    return value


# Every parameter name a task declares, with its check and conversion. None passes unchecked
# (it is each of these parameters' "not given").
CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "trigger": one_of(TRIGGERS),
    "user_ids": user_id_list,
    "user_id": user_id,
    "entity_id": user_id,
    "entity_type": one_of(ENTITY_TYPES),
    "job_id": a_uuid,
    "run_id": a_uuid,
    "unit_no": whole_number(0, 2**31 - 1),
    "dry_run": boolean,
    "force_refresh": boolean,
    "week_of": monday,
    "older_than_days": whole_number(0, 36_500),
    "task_id": task_id,
    "error": text_piece,
    "context_type": context_type,
    "failed_since": moment,
    "failed_until": moment,
}


def checked(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments converted by their checks; the first bad one raises InvalidTaskArguments.
    (tests/integration/test_task_arguments.py proves every parameter of every task has a check.)"""
    return {
        name: value if value is None or name not in CHECKS else CHECKS[name](value, name)
        for name, value in arguments.items()
    }


def unit_of(run_id: uuid.UUID | None, unit_no: int | None, payload: Any = None) -> Unit | None:
    """The run unit a message names, or None for work typed by hand outside a run."""
    if (run_id is None) != (unit_no is None):
        raise InvalidTaskArguments("run_id and unit_no go together: give both or neither")
    if run_id is None or unit_no is None:
        return None
    return Unit(run_id, unit_no, payload)


def ended_week(week_of: date | None, latest: date, *, required: bool = False) -> date:
    """A week that has a brief to write: the one given, or by default the week just ended."""
    if week_of is None:
        if required:
            raise InvalidTaskArguments("week_of must be a date YYYY-MM-DD, got None")
        return latest
    problem = week_of_problem(week_of, latest)
    if problem:
        raise InvalidTaskArguments(f"week_of {problem}, got {week_of.isoformat()!r}")
    return week_of
