"""Tasks: what a focus session is about (title, course, type)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from focus_app.models import Task


def create_task(db: Session, user_id: str, *, title: str, course: str | None, task_type: str | None) -> Task:
    task = Task(user_id=user_id, title=title, course=course, task_type=task_type)
    db.add(task)
    db.commit()
    return task


def list_tasks(db: Session, user_id: str, page: int, page_size: int) -> tuple[list[Task], int]:
    query = select(Task).where(Task.user_id == user_id)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(Task.created_at.desc(), Task.id).limit(page_size).offset((page - 1) * page_size)
    ).all()
    return list(rows), total
