from .base import Base
from .focus import FocusSession, Task, User, UserFocusProfile
from .jobs import JobRun, JobRunUnit

__all__ = ["Base", "FocusSession", "JobRun", "JobRunUnit", "Task", "User", "UserFocusProfile"]
