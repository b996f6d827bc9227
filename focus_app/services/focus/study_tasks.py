"""Tasks: what a focus session is about (title, course, type)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from focus_app.models import Task
from focus_app.services.jobkit.pagination import Page, paginate


def create_task(db: Session, user_id: str, *, title: str, course: str | None, task_type: str | None) -> Task:
    task = Task(user_id=user_id, title=title, course=course, task_type=task_type)
    db.add(task)
    db.commit()
    return task


def list_tasks(db: Session, user_id: str, page: int, page_size: int) -> Page[Task]:
    query = select(Task).where(Task.user_id == user_id)
    return paginate(db, query, (Task.created_at.desc(), Task.id), page, page_size)
