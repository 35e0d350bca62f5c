"""Relay connections with keyset (seek) cursors.

Cursors name a position in an ordering, not an offset, so paging stays fast at any depth and stable while
new rows arrive. A connection nested under a list (each mailbox's first conversations, each conversation's
newest messages) is loaded for all siblings at once with a window function: one query per page, whatever
the number of parents.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import strawberry
from django.conf import settings
from django.db.models import Count, F, Func, IntegerField, Model, Q, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber
from strawberry import relay

from core import cursors, sql
from core.errors import DomainError, ErrorCode
from core.prepared import Prepared

T = TypeVar("T")

DEFAULT_PAGE = 50


@strawberry.type(name="Edge")
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(name="Connection")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: relay.PageInfo
    _count: strawberry.Private[Callable[[], int]]

    @strawberry.field(description="How many items the whole list holds, across all pages.")
    def total_count(self) -> int:
        return self._count()


def _encode_cursor(values: Sequence[Any]) -> str:
    return cursors.encode_values(list(values))


def invalid_cursor() -> DomainError:
    return DomainError(ErrorCode.VALIDATION_ERROR, "This cursor is not valid; start again from the first page.")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        values = json.loads(cursors.decode(cursor))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError
        return values
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor()


def cursor_int(value: Any) -> int:
    """A key from a cursor: an integer in the range of a database id (a bool or 1e30 is not)."""
    if type(value) is not int or not 0 <= value < 2**63:
        raise invalid_cursor()
    return value


@dataclass(frozen=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    def size(self) -> int:
        if self.first is not None and self.last is not None:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "Pass first (with after) or last (with before), not both.")
        limit = settings.MAILBOX["PAGE_MAX_SIZE"]
        wanted = self.last if self.last is not None else self.first
        if wanted is None:
            return min(DEFAULT_PAGE, limit)
        if wanted < 0:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "first and last must not be negative.")
        return min(wanted, limit)

    @property
    def backwards(self) -> bool:
        return self.last is not None or (self.before is not None and self.first is None)

    @property
    def is_first_page(self) -> bool:
        return self.after is None and self.before is None


@dataclass(frozen=True)
class Ordering:
    """A total order on rows: fields (all in one direction) ending with a unique one; cursors hold their values."""

    fields: tuple[str, ...]
    descending: bool
    to_json: Callable[[Any], list[Any]]
    from_json: Callable[[list[Any]], list[Any]]

    def order_by(self, reverse: bool = False) -> list:
        desc = self.descending != reverse
        return [F(f).desc() if desc else F(f).asc() for f in self.fields]

    def position(self, cursor: str) -> list[Any]:
        """The ordering values a cursor names; anything malformed is VALIDATION_ERROR, never a server error."""
        try:
            return self.from_json(decode_cursor(cursor, len(self.fields)))
        except (ValueError, TypeError, OverflowError, IndexError):
            raise invalid_cursor()

    def seek(self, values: list[Any], *, forward: bool) -> Q:
        """Rows strictly after (forward) or before the position `values` in this ordering."""
        greater = forward != self.descending
        condition = Q()
        for i in range(len(self.fields) - 1, -1, -1):
            op = "gt" if greater else "lt"
            step = Q(**{f"{self.fields[i]}__{op}": values[i]})
            if i < len(self.fields) - 1:
                step |= Q(**{self.fields[i]: values[i]}) & condition
            condition = step
        return condition

    def cursor_of(self, row: Any) -> str:
        return _encode_cursor(self.to_json(row))


def _build(rows: list, args: PageArgs, ordering: Ordering, size: int, count: Callable[[], int]) -> Connection:
    has_more = len(rows) > size
    rows = rows[:size]
    if args.backwards:
        rows.reverse()
        has_previous, has_next = has_more, args.before is not None
    else:
        has_next, has_previous = has_more, args.after is not None
    edges = [Edge(cursor=ordering.cursor_of(row), node=row) for row in rows]
    page_info = relay.PageInfo(
        has_next_page=has_next,
        has_previous_page=has_previous,
        start_cursor=edges[0].cursor if edges else None,
        end_cursor=edges[-1].cursor if edges else None,
    )
    return Connection(edges=edges, page_info=page_info, _count=count)


def _window(queryset: QuerySet, args: PageArgs, ordering: Ordering) -> QuerySet:
    queryset = queryset.order_by(*ordering.order_by(reverse=args.backwards))
    if args.after is not None:
        queryset = queryset.filter(ordering.seek(ordering.position(args.after), forward=True))
    if args.before is not None:
        queryset = queryset.filter(ordering.seek(ordering.position(args.before), forward=False))
    return queryset


def paginate(
    queryset: QuerySet, args: PageArgs, ordering: Ordering, *, count: Callable[[], int] | None = None
) -> Connection:
    size = args.size()
    rows = list(_window(queryset, args, ordering)[: size + 1]) if size else []
    return _build(rows, args, ordering, size, count or queryset.count)


def _connections(
    rows_by_parent: dict[int, list],
    args: PageArgs,
    ordering: Ordering,
    size: int,
    counts: Callable[[], dict[int, int]],
    *,
    totals_on_rows: bool = False,
) -> dict[int, Connection]:
    """Each parent's connection; `counts` (every parent's total) runs once, when a `totalCount` is first asked,
    unless the rows carry their list's total (`totals_on_rows`: a parent without rows has none)."""
    cached: dict[str, dict[int, int]] = {}

    def count_for(pk: int) -> Callable[[], int]:
        def count() -> int:
            if "all" not in cached:
                cached["all"] = counts()
            return cached["all"].get(pk, 0)

        return count

    def total_of(pk: int, rows: list) -> Callable[[], int]:
        if not totals_on_rows:
            return count_for(pk)
        total = rows[0]._total if rows else 0
        return lambda: total

    return {pk: _build(rows, args, ordering, size, total_of(pk, rows)) for pk, rows in rows_by_parent.items()}


def _count_of(queryset: QuerySet) -> Subquery:
    """The number of rows of `queryset`, as an uncorrelated subquery (PostgreSQL runs it once, an InitPlan)."""
    counted = queryset.order_by().annotate(_n=Func(F("pk"), function="COUNT")).values("_n")
    return Subquery(counted, output_field=IntegerField())


def paginate_siblings(
    queryset: QuerySet,
    args: PageArgs,
    ordering: Ordering,
    *,
    parent_field: str,
    parent_ids: Sequence[int],
    counts: Callable[[], dict[int, int]],
    totals_of: QuerySet | None = None,
) -> dict[int, Connection]:
    """The same page of a nested connection for many parents in one query (ROW_NUMBER per parent).

    One parent gets a plain ORDER BY … LIMIT, which an index serves without ranking the whole list.
    `totals_of` (the list's rows without the page's annotations and joins, given when a `totalCount` is selected)
    reads each parent's total with the page instead of by `counts`: a COUNT per parent of the rows the window
    numbers anyway, or for one parent a COUNT subquery run once (a COUNT(*) OVER () would read every row of the
    list, joins and per-row subqueries included, before the LIMIT). Only on a first page: a page after a cursor
    holds some of the rows, not the whole list."""
    size = args.size()
    rows_by_parent: dict[int, list] = {pk: [] for pk in parent_ids}
    with_totals = totals_of is not None and bool(size) and args.is_first_page
    if size and len(parent_ids) == 1:
        only = parent_ids[0]
        rows = queryset.filter(**{parent_field: only})
        if with_totals:
            rows = rows.annotate(_total=_count_of(totals_of.filter(**{parent_field: only})))
        rows_by_parent[only] = list(_window(rows, args, ordering)[: size + 1])
    elif size:
        numbered = _window(queryset.filter(**{f"{parent_field}__in": list(parent_ids)}), args, ordering).annotate(
            _row=Window(
                RowNumber(),
                partition_by=[F(parent_field)],
                order_by=ordering.order_by(reverse=args.backwards),
            )
        )
        if with_totals:
            numbered = numbered.annotate(_total=Window(Count("*"), partition_by=[F(parent_field)]))
        for row in numbered.filter(_row__lte=size + 1):
            rows_by_parent[getattr(row, parent_field)].append(row)
    return _connections(rows_by_parent, args, ordering, size, counts, totals_on_rows=with_totals)


def first_page_of_one(
    queryset: QuerySet, ordering: Ordering, *, size: int, backwards: bool, totals_of: QuerySet | None
) -> QuerySet:
    """The statement of `paginate_siblings` for one parent's first page (`queryset` already filtered to it, and
    `totals_of` when a `totalCount` is selected), for `paginate_first_of_one`'s prepared page."""
    if totals_of is not None:
        queryset = queryset.annotate(_total=_count_of(totals_of))
    return queryset.order_by(*ordering.order_by(reverse=backwards))[: size + 1]


def paginate_first_of_one(
    page: Prepared,
    values: dict[str, Any],
    parent: int,
    args: PageArgs,
    ordering: Ordering,
    *,
    with_totals: bool,
    counts: Callable[[], dict[int, int]],
) -> dict[int, Connection]:
    """`paginate_siblings` of one parent's first page, from its statement built and compiled once (`page`: of
    `first_page_of_one` with this page's size and direction, and totals when `with_totals`)."""
    rows = page.rows(values=values)
    return _connections({parent: rows}, args, ordering, args.size(), counts, totals_on_rows=with_totals)


def numbered_page(prepared: Prepared, queryset: QuerySet, ordering: Ordering, *, backwards: bool) -> QuerySet:
    """The queryset of a `paginate_numbered` page: `queryset`'s rows within the ranges (`prepared.text("ranges")`),
    in `ordering`."""
    return queryset.filter(sql.condition(prepared.text("ranges"))).order_by(*ordering.order_by(reverse=backwards))


def paginate_numbered(
    page: Prepared,
    model: type[Model],
    args: PageArgs,
    ordering: Ordering,
    *,
    parent_field: str,
    ranges: dict[int, tuple[int, int]],
    counts: Callable[[], dict[int, int]],
) -> dict[int, Connection]:
    """The first page of a nested connection for many parents whose rows are numbered without gaps (a message's
    `sequence` in its thread): each parent's page is the rows numbered within its range `(low, high)`, so no
    window function ranks them, and the ORM compiles one raw condition, not a `Q` per parent (50 of them cost
    more to build than the query takes to run). `ordering` is one column, the number; `page` is the statement
    (`numbered_page` of the list's queryset, built and compiled once, `core.prepared`) of `model`'s rows."""
    size = args.size()
    rows_by_parent: dict[int, list] = {pk: [] for pk in ranges}
    if size and ranges:
        parent, numbered = sql.column(model, parent_field), sql.column(model, ordering.fields[0])
        # One raw condition with a constant range per parent: the planner picks each range's index (the unique
        # (parent, number) one for a long thread), which a join to the pairs as an array does not (it expects
        # every parent's average and filters a long thread's whole list). The numbers are literals (core.sql).
        condition = " OR ".join(
            f"({parent} = {int(pk)} AND {numbered} BETWEEN {int(low)} AND {int(high)})"
            for pk, (low, high) in ranges.items()
        )
        attname = model._meta.get_field(parent_field).attname
        for row in page.rows(texts={"ranges": condition}):
            rows_by_parent[getattr(row, attname)].append(row)
    return _connections(rows_by_parent, args, ordering, size, counts)
