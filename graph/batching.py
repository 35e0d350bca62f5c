"""Sibling batching: a nested field loads its data once for every row of the list its parent came in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import DomainError
from graph.paths import RowBatch

if TYPE_CHECKING:
    from graph.context import Context


def with_siblings(context: Context, rows: list) -> list:
    """Lets a nested field batch its query over every row of the list its parent came in."""
    batch = RowBatch(rows)
    for row in rows:
        context.paths.of(row).batch = batch
    return rows


def batch_of(context: Context, row: Any) -> RowBatch:
    path = context.paths.of(row)
    if path.batch is None:
        path.batch = RowBatch([row])
    return path.batch


def passes(check, row) -> bool:
    try:
        check(row)
    except DomainError:
        return False
    return True
