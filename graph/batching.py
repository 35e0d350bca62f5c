"""Sibling batching: a nested field loads its data once for every row of the list its parent came in."""

from __future__ import annotations

from typing import Any

from core.errors import DomainError


class RowBatch:
    """The rows of one list: a nested field loads its data for all of them in one query (hashed by identity)."""

    __slots__ = ("rows",)

    def __init__(self, rows: list) -> None:
        self.rows = rows


def with_siblings(rows: list) -> list:
    """Lets a nested field batch its query over every row of the list its parent came in."""
    batch = RowBatch(rows)
    for row in rows:
        row._batch = batch
    return rows


def batch_of(row: Any) -> RowBatch:
    batch = getattr(row, "_batch", None)
    if batch is None:
        batch = RowBatch([row])
        row._batch = batch
    return batch


def passes(check, row) -> bool:
    try:
        check(row)
    except DomainError:
        return False
    return True
