"""How each row of an answer was reached, said by the request's context instead of attributes on the rows.

The GraphQL types resolve on plain ORM rows; what a field needs to know about the path to a row lives here:
the place a staff member came from (`via`: the access rule and audit label of a conversation, a message and
its files), the mutation a conversation answers (its messages are then audited as read), the list it came in
(its siblings, so nested fields load for all of them at once) and a page's attachments. Keyed by the row
object itself: two rows of one record reached two ways in one request keep their own paths, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import models


class RowBatch:
    """The rows of one list: a nested field loads its data for all of them in one query (hashed by identity)."""

    __slots__ = ("rows",)

    def __init__(self, rows: list) -> None:
        self.rows = rows


@dataclass(slots=True)
class Path:
    # The place a staff member reached the row from (None: not said, or a patient).
    via: models.AccessSource | None = None
    # The mutation whose answer this conversation is.
    answer_of: str | None = None
    batch: RowBatch | None = None
    # A message's attachments, loaded with its page (`graph.conversations.types.attach_attachments`).
    attachments: list[models.Attachment] | None = None


class Paths:
    """Per request: the `Path` of every row that has one."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[int, tuple[Any, Path]] = {}

    def of(self, row: Any) -> Path:
        entry = self._rows.get(id(row))
        if entry is not None and entry[0] is row:
            return entry[1]
        path = Path()
        self._rows[id(row)] = (row, path)  # holding the row keeps its id from being reused in this request
        return path

    def via(self, row: Any) -> models.AccessSource | None:
        entry = self._rows.get(id(row))
        return entry[1].via if entry is not None and entry[0] is row else None

    def reached(self, rows: list, via: models.AccessSource | None) -> list:
        for row in rows:
            self.of(row).via = via
        return rows
