"""Domain errors: the API turns them into JSON responses, tasks into failed results."""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class InvalidInput(DomainError):
    """Input that passed the schema but breaks a domain rule (field errors in `errors`)."""


class RecordedFailure(Exception):
    """A failure the service already recorded (its run or job says so): the task fails with it and
    nothing is retried or recorded again."""
