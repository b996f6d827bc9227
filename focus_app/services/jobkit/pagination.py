"""Offset pages of a query: the one place paging is computed (the API's page envelope dumps a Page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

Item = TypeVar("Item")


@dataclass(frozen=True)
class Page(Generic[Item]):
    items: list[Item]
    total: int
    page: int
    page_size: int


def paginate(
    db: Session, query: Select[Any], order_by: tuple[Any, ...], page: int, page_size: int
) -> Page[Any]:
    """Rows of `query` in `order_by` order (make it total: end with a unique column), one page."""
    total = db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = db.scalars(query.order_by(*order_by).limit(page_size).offset((page - 1) * page_size)).all()
    return Page(list(rows), total, page, page_size)
