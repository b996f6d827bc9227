"""All models. Every module of this package is imported, so Alembic sees every table."""

import importlib
import pkgutil

from .base import Base
from .focus import FocusSession, Task, User, UserFocusProfile
from .jobs import JobRun, JobRunUnit

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Base", "FocusSession", "JobRun", "JobRunUnit", "Task", "User", "UserFocusProfile"]
