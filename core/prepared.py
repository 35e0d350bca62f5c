"""Querysets of a fixed shape, built and compiled to SQL once per process, then run with each call's values.

Building a queryset (`filter`, `annotate`, `select_related`) and compiling it (`SQLCompiler.as_sql`) cost about a
quarter of a 50-conversation page's CPU, for statements whose SQL text is the same on every request but for a few
values. A `Prepared` builds its queryset once per database alias, keeps the compiled SQL and what the ORM needs to
read rows back (the selected columns, their converters, the related-object populators), and each call only
substitutes its values and reads model instances exactly as `ModelIterable` does.

The builder marks where values go:
- `Prepared.value(name)`: a parameter (an integer key, a string): the builder passes it where it would pass the
  value, and the compiled parameter list has it replaced;
- `Prepared.text(name)`: SQL text (conditions written with literals, `core.sql`), for a `RawSQL` of the builder;
  the compiled text has it replaced. The text a call gives must hold no `%` (it is not a parameter).

A builder must give one shape: anything that changes the SQL beyond these values (a filter only some calls add, an
empty list the ORM turns into no query at all) is another `Prepared`, or a key of `Prepared.variant`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, get_related_populators

# Stand-ins for values while the builder runs: the ORM prepares them as it would the real value (`int()` of an
# integer key), and the compiled parameter list is searched for them. Nothing real takes these values.
_INTEGER_STAND_IN = -7_318_250_000_000_000_000
_TEXT_STAND_IN = "\x00prepared value {}\x00"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    value_positions: Mapping[str, tuple[tuple[int, type | None], ...]]  # (index, the driver type it is wrapped in)
    texts: tuple[str, ...]
    alias: str
    # How rows become instances (a queryset of model rows only; None for `values_list` and the like).
    model: type[Model] | None = None
    init_list: list[str] = field(default_factory=list)
    model_slice: slice = field(default_factory=lambda: slice(0))
    related_populators: list = field(default_factory=list)
    annotation_col_map: Mapping[str, int] | None = None
    converters: list = field(default_factory=list)
    col_count: int | None = None  # rows are cut to this many columns when the ORM selected extra ones (ordering)


def _marker(name: str) -> str:
    return f"(/*prepared:{name}*/ NULL)"


class Prepared:
    """`Prepared(build)`; `build(prepared)` returns the queryset, marking values with `prepared.value(name)` and
    SQL text with `prepared.text(name)`. `rows(values={...}, texts={...})` runs it."""

    def __init__(self, build: Callable[[Prepared], QuerySet]) -> None:
        self._build = build
        self._compiled: _Compiled | None = None
        self._values: dict[str, int | str] = {}
        self._texts: list[str] = []
        self._lock = threading.Lock()

    def value(self, name: str, kind: type[int] | type[str] = int) -> Any:
        """The stand-in of parameter `name` (an integer, or a string with `kind=str`), for the builder."""
        if name not in self._values:
            count = len(self._values)
            self._values[name] = _INTEGER_STAND_IN - count if kind is int else _TEXT_STAND_IN.format(count)
        return self._values[name]

    def text(self, name: str) -> str:
        """The stand-in of SQL text `name`, for the builder's `RawSQL`."""
        if name not in self._texts:
            self._texts.append(name)
        return _marker(name)

    def statement(
        self, *, values: Mapping[str, Any] | None = None, texts: Mapping[str, str] | None = None
    ) -> tuple[str, list | tuple]:
        """The SQL and parameters of this call, for a caller that runs it inside its own statement (any queryset:
        `values_list` too)."""
        compiled = self._compiled or self._compile()
        sql = compiled.sql
        for name in compiled.texts:
            text = texts[name]  # every text of the shape is given
            if "%" in text:
                raise ValueError("prepared SQL text holds no % (pass values as values)")
            sql = sql.replace(_marker(name), text)
        params = compiled.params
        if compiled.value_positions:
            params = list(params)
            for name, positions in compiled.value_positions.items():  # every value the shape takes is given
                value = values[name]
                for position, wrap in positions:
                    params[position] = value if wrap is None else wrap(value)
        return sql, params

    def rows(self, *, values: Mapping[str, Any] | None = None, texts: Mapping[str, str] | None = None) -> list:
        """The model instances of this call, as the ORM reads them."""
        compiled = self._compiled or self._compile()
        if compiled.model is None:
            raise TypeError("a prepared queryset reads model rows: no values(), prefetch_related or related managers")
        sql, params = self.statement(values=values, texts=texts)
        connection = connections[compiled.alias]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        return _instances(compiled, fetched, connection)

    def _compile(self) -> _Compiled:
        with self._lock:
            if self._compiled is None:
                self._compiled = _compile(self._build(self), self._values, self._texts)
            return self._compiled


def _compile(queryset: QuerySet, values: Mapping[str, int | str], texts: list[str]) -> _Compiled:
    models = not (
        queryset._iterable_class is not ModelIterable
        or queryset._prefetch_related_lookups
        or queryset._known_related_objects
    )
    alias = queryset.db
    compiler = queryset.query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    # The backend may have wrapped a value in a type of its driver (psycopg's `Int4` for a `Value(1)`): a call's
    # value is wrapped alike.
    positions = {
        name: tuple(
            (i, None if type(param) is type(stand_in) else type(param))
            for i, param in enumerate(params)
            if isinstance(param, type(stand_in)) and param == stand_in
        )
        for name, stand_in in values.items()
    }
    # A value of the builder's that a shape leaves out is not needed by it (and not looked for); a text is
    # always placed.
    positions = {name: found for name, found in positions.items() if found}
    missing = [name for name in texts if _marker(name) not in sql]
    if missing:
        raise ValueError(f"the prepared queryset does not place the text {missing} in its SQL")
    statement = {
        "sql": sql,
        "params": tuple(params),
        "value_positions": positions,
        "texts": tuple(texts),
        "alias": alias,
    }
    if not models:
        return _Compiled(**statement)
    select, klass_info = compiler.select, compiler.klass_info
    fields = klass_info["select_fields"]
    return _Compiled(
        **statement,
        model=klass_info["model"],
        init_list=[column[0].target.attname for column in select[fields[0] : fields[-1] + 1]],
        model_slice=slice(fields[0], fields[-1] + 1),
        related_populators=get_related_populators(klass_info, select, alias),
        annotation_col_map=compiler.annotation_col_map,
        converters=list(compiler.get_converters([column[0] for column in select[: compiler.col_count]]).items()),
        col_count=compiler.col_count if compiler.has_extra_select else None,
    )


def _instances(compiled: _Compiled, fetched: list, connection) -> list:
    """Model instances from the rows, as `ModelIterable` makes them (converters, related objects, annotations)."""
    model, alias, init_list, model_slice = compiled.model, compiled.alias, compiled.init_list, compiled.model_slice
    populators, annotations, converters = compiled.related_populators, compiled.annotation_col_map, compiled.converters
    objects = []
    for row in fetched:
        if compiled.col_count is not None:
            row = row[: compiled.col_count]
        if converters:
            row = list(row)
            for position, (functions, expression) in converters:
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
        obj = model.from_db(alias, init_list, row[model_slice])
        for populator in populators:
            populator.populate(row, obj)
        if annotations:
            for name, position in annotations.items():
                setattr(obj, name, row[position])
        objects.append(obj)
    return objects


class Variants:
    """One `Prepared` per shape key: `Variants(build)`, `variants[key].rows(...)`, `build(prepared, key)`. At most
    `shapes` of them are kept (the oldest compiled goes first), as the parser and validation caches are bounded:
    a key may come from a request's arguments (a page size)."""

    def __init__(self, build: Callable[[Prepared, Hashable], QuerySet], *, shapes: int = 64) -> None:
        self._build = build
        self._shapes: dict[Hashable, Prepared] = {}
        self._most = shapes
        self._lock = threading.Lock()

    def __getitem__(self, key: Hashable) -> Prepared:
        found = self._shapes.get(key)
        if found is None:
            with self._lock:
                found = self._shapes.get(key)
                if found is None:
                    if len(self._shapes) >= self._most:
                        del self._shapes[next(iter(self._shapes))]
                    found = self._shapes[key] = Prepared(lambda prepared: self._build(prepared, key))
        return found
