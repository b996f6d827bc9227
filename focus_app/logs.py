"""Structured logs: one JSON object per line, carrying the request or task it belongs to.

The API binds `request_id` (and `user_id` once authenticated); the worker binds `task_id` and
`task_name` around every task; services bind `job_id` / `run_id` where they have one. Every line
logged while bound carries them, whichever logger wrote it.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_context: ContextVar[dict[str, Any] | None] = ContextVar("log_context", default=None)

LOG_FORMATS = ("json", "text")


def bind(**fields: Any) -> None:
    """Add fields to every log line of the current request or task."""
    _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


def only_user(user_ids: list[str]) -> str | None:
    """A batch of one user (a hand-typed call, a retry) logs that user's id; a larger one its run."""
    return user_ids[0] if len(set(user_ids)) == 1 else None


def clear() -> None:
    _context.set(None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.context = _context.get() or {}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", {})
        if context:
            line += " " + " ".join(f"{key}={value}" for key, value in context.items())
        return line


def configure(level: str, fmt: str) -> None:
    """Install one handler on the root logger (idempotent: app factories may run twice)."""
    root = logging.getLogger()
    root.setLevel(level)
    handler = next((h for h in root.handlers if getattr(h, "focus_handler", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.focus_handler = True  # type: ignore[attr-defined]
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
