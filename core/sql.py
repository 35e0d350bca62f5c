"""Conditions on lists of integer keys, written into the SQL text instead of one parameter per value.

psycopg binds parameters on the client: it splits every statement at its placeholders in Python, and caches the
split only for statements of at most 50 parameters and 4,096 characters (`psycopg._queries`). A page's
`IN (%s, %s, …)` of 250 message ids, or 50 `(thread, range)` arms of three parameters each, was split again on
every request (about a tenth of a 50-conversation page's CPU). The values here are keys our own rows hold, each
passed through `int()`, so writing them as literals is what the client-side binding sent anyway, minus the split.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import BooleanField, Model, QuerySet
from django.db.models.expressions import RawSQL


def column(model: type[Model], field_name: str) -> str:
    """The quoted `table.column` of a field of the model, for a condition of this module."""
    meta = model._meta
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return f"{quote(meta.db_table)}.{quote(meta.get_field(field_name).column)}"


def integers(values: Iterable[int]) -> str:
    """`1,2,3` from integer keys; anything that is not an integer raises (`int()` of it)."""
    return ",".join(str(int(value)) for value in values)


def condition(sql: str) -> RawSQL:
    """A boolean expression for `QuerySet.filter`, without parameters."""
    return RawSQL(sql, (), output_field=BooleanField())


def key_in(queryset: QuerySet, field_name: str, keys: Iterable[int]) -> QuerySet:
    """`queryset.filter(<field>__in=keys)` with the keys written as literals (an empty list matches nothing)."""
    listed = integers(keys)
    if not listed:
        return queryset.none()
    return queryset.filter(condition(f"{column(queryset.model, field_name)} IN ({listed})"))
