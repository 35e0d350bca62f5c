"""A compiled execution path for validated documents: one plan per operation, then only values are touched.

graphql-core works out, for every field of every object it completes, which resolver to call, what its
arguments are, which sub-selections apply and how to complete the value, and it builds a `GraphQLResolveInfo`
for every resolver call; a 50-conversation page resolves about 3,600 fields that way. A plan does that work
once per (document, operation, values of the `@skip`/`@include` variables) and keeps it in a bounded cache,
like the parser and validation caches: per request it only reads columns off rows, calls the resolvers that
compute something (with an `info` built only for them) and builds the result dict.

It gives graphql-core's answers because it is built from graphql-core's own parts: the fields of each selection
come from graphql-core's `collect_fields`/`collect_subfields` (so the key order, aliases, fragments, merged
fields and `@skip`/`@include` are the executor's), arguments from `get_argument_values`, errors go through the
executor's `handle_field_error` (located at the same path, null propagated to the same nullable parent, in the
same depth-first order), leaves through `complete_leaf_value` (unless they already are the JSON value: a `str` for
a String, an `int` in range for an Int, a `bool` for a Boolean; a Date or DateTime is strawberry's serializer itself,
`isoformat()`; an enum value's name, once found, is looked up), and the null-in-non-null and not-a-list errors
say what graphql-core says. Anything it does not compile is executed by graphql-core itself, for that field only:
abstract types (interfaces, unions; the schema has the `Node` interface but no field of that type), introspection
(`__schema`, `__type`). `__typename` is the parent type's name, as graphql-core answers it.

Why errors do not restart the request on graphql-core: the plan has already called resolvers by then, and they
have effects (audit rows for what was shown, rate-limit counts, memoized loads): running the request a second time
would write a second audit row and change the query counts. Errors are handled the way graphql-core handles them
instead, and `tests/api/test_plan_differential.py` compares data and errors of both paths
(`tests/live/test_live_plan_differential.py` for live events). What is decided before any
resolver runs falls back to graphql-core for the whole request: mutations (their root fields run serially and
change data; a mutation payload is small), an operation with an asynchronous resolver anywhere in its selection,
fragment arguments, schema middleware (an extension with a `resolve` hook), an abort signal, and error
propagation switched off. The schema has no asynchronous query field; a sync resolver returning an awaitable is an
error, as graphql-core's synchronous execution makes it one.

Fields answered without the strawberry resolver chain are those `graph.fast_fields` answers directly (plain
columns, methods of `self` alone, relay node ids) and methods of `self` with `info` and arguments, called the way
the chain ends in calling them (arguments converted by strawberry's `convert_arguments`, once per request): none
of them has permission classes, field extensions or exception handlers. Every other field calls its resolver
through the chain, so permission extensions run as before; guards are inside the methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import dis
import inspect
import os
import threading
from base64 import b64encode
from collections import OrderedDict
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from django.db import models
from django.db.models import QuerySet
from django.db.models.manager import BaseManager
from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLString,
    OperationType,
    Undefined,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import collect_fields, collect_subfields
from graphql.execution.executor import invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.language import ArgumentNode, DirectiveNode, VariableNode, Visitor, visit
from graphql.pyutils import Path, is_iterable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.schema.types import base_scalars
from strawberry.types import Info as StrawberryInfo
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField
from strawberry_django.fields.field import StrawberryDjangoField
from strawberry_django.resolvers import resolve_base_manager

from graph import fast_fields

PLAN_CACHE_SIZE = 256
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

# `GRAPHQL_PLANS=0` executes everything on graphql-core (to compare, e.g. `make bench`); `plans_switched` does it
# for one thread (the differential tests).
_ENABLED = os.environ.get("GRAPHQL_PLANS", "1") != "0"
_switch = threading.local()


def plans_enabled() -> bool:
    return getattr(_switch, "enabled", _ENABLED)


class plans_switched:
    """`with plans_switched(False):` executes on graphql-core alone in this thread."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self.before = plans_enabled()
        _switch.enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        _switch.enabled = self.before


# Executions from a plan and operations graphql-core executed for want of one (the tests read them).
STATS = {"planned": 0, "graphql-core": 0}


class _NotCompiled(Exception):
    """The operation has something the plan does not run: graphql-core executes the whole request."""


Execute = Callable[[Any, Any, Path | None], Any]  # (executor, source, parent path) -> completed value


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, running queries and subscription events from a cached plan when there is one."""

    def execute_operation(self, serially: bool | None = None):
        operation = self.operation
        if (
            operation.operation is OperationType.MUTATION
            or serially
            or (self.middleware_manager is not None and self.middleware_manager.middlewares)
            or self.abort_signal is not None
            or not self.error_propagation
            or not plans_enabled()
            # strawberry-django runs a resolver through sync_to_async inside an event loop: the plan calls
            # resolvers directly, so it runs only where no loop runs (the sync view's thread, the live thread).
            or asyncio._get_running_loop() is not None
        ):
            return super().execute_operation(serially)
        plan = plan_of(self)
        if plan is None:
            STATS["graphql-core"] += 1
            return super().execute_operation(serially)
        STATS["planned"] += 1
        self._plan_args = {}
        self._plan_light_info = _ContextOnly(self.context_value)
        try:
            data = plan(self, self.root_value, None)
        except GraphQLError as error:  # a null propagated to the root, as graphql-core's execute_operation
            self.collected_errors.add(error, None)
            return self.finish(self.build_response(None))
        return self.finish(self.build_response(data))


# ---- the cache ------------------------------------------------------------------------------------------------

_plans: OrderedDict[tuple, tuple[object, Execute | None]] = OrderedDict()
_plans_lock = threading.Lock()


def plan_of(executor: PlannedExecutor) -> Execute | None:
    """The plan of the executor's operation for its `@skip`/`@include` values (None: not compiled)."""
    operation = executor.operation
    directive_values = tuple(executor.variable_values.coerced.get(name) for name in _condition_variables(executor))
    key = (id(operation), directive_values)
    known = _plans.get(key)
    if known is not None and known[0] is operation:
        with _plans_lock:
            if key in _plans:
                _plans.move_to_end(key)
        return known[1]
    try:
        plan = _Compiler(executor).root()
    except _NotCompiled:
        plan = None
    with _plans_lock:
        _plans[key] = (operation, plan)  # the node is kept alive with its plan, so its id names only it
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


_conditions: OrderedDict[int, tuple[object, tuple[str, ...]]] = OrderedDict()


def _condition_variables(executor: PlannedExecutor) -> tuple[str, ...]:
    """The variables `@skip(if:)`/`@include(if:)` read anywhere in the document: they decide which fields exist."""
    operation = executor.operation
    known = _conditions.get(id(operation))
    if known is not None and known[0] is operation:
        return known[1]
    names: list[str] = []

    class Conditions(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: object) -> None:
            if node.name.value in ("skip", "include"):
                for argument in node.arguments or ():
                    if isinstance(argument, ArgumentNode) and isinstance(argument.value, VariableNode):
                        names.append(argument.value.name.value)

    visit(operation, Conditions())
    for fragment in executor.fragment_definitions.values():
        visit(fragment, Conditions())
    found = tuple(dict.fromkeys(names))
    with _plans_lock:
        _conditions[id(operation)] = (operation, found)
        while len(_conditions) > PLAN_CACHE_SIZE:
            _conditions.popitem(last=False)
    return found


# ---- compiling ------------------------------------------------------------------------------------------------


def _definition(field_def: Any) -> Any:
    return (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)


class _Compiler:
    def __init__(self, executor: PlannedExecutor) -> None:
        self.executor = executor
        self.schema = executor.schema

    def root(self) -> Execute:
        executor = self.executor
        root_type = self.schema.get_root_type(executor.operation.operation)
        if root_type is None:
            raise _NotCompiled
        grouped, _defers, _forbidden = collect_fields(
            self.schema,
            executor.fragments,
            executor.variable_values,
            root_type,
            executor.operation,
            executor.hide_suggestions,
        )
        return self.fields(root_type, grouped)

    def subfields(self, object_type: GraphQLObjectType, field_details_list: list) -> Execute:
        executor = self.executor
        grouped, _defers, _forbidden = collect_subfields(
            self.schema,
            executor.fragments,
            executor.variable_values,
            executor.operation,
            object_type,
            field_details_list,
            executor.hide_suggestions,
        )
        return self.fields(object_type, grouped)

    def fields(self, parent_type: GraphQLObjectType, grouped: dict) -> Execute:
        plans = tuple((key, self.field(parent_type, key, details)) for key, details in grouped.items())

        def execute_fields(executor: Any, source: Any, path: Path | None) -> dict:
            return {key: execute(executor, source, path) for key, execute in plans}

        return execute_fields

    def field(self, parent_type: GraphQLObjectType, key: str, details: list) -> Execute:
        if any(d.fragment_variable_values is not None for d in details):
            raise _NotCompiled
        node = details[0].node
        name = node.name.value
        parent_name = parent_type.name
        if name == "__typename":
            return lambda executor, source, path: parent_name
        field_def = self.schema.get_field(parent_type, name)
        if field_def is None or name.startswith("__"):  # introspection: graphql-core's own
            return _delegated(parent_type, key, details)
        definition = _definition(field_def)
        # A subscription's root field is an async generator, but an event's execution calls only its `resolve`,
        # which strawberry makes `lambda event, *_, **__: event`: synchronous, and called as it is below.
        subscription_root = getattr(definition, "is_subscription", False)
        if definition is not None and getattr(definition, "is_async", False) and not subscription_root:
            raise _NotCompiled
        return_type = field_def.type
        complete = self.completion(return_type, parent_name, name, details)
        resolve = field_def.resolve or self.executor.field_resolver
        nodes = [d.node for d in details]
        takes_args = bool(field_def.args or node.arguments)
        fragment_variables = details[0].fragment_variable_values

        with_arguments = _argument_method(definition, field_def, self.schema) if takes_args else None
        if with_arguments is not None:
            return self.argument_method_field(field_def, parent_type, key, details, complete, with_arguments)

        def call_resolver(executor: Any, source: Any, parent_path: Path | None) -> Any:
            path = Path(parent_path, key, parent_name)
            info = executor.build_resolve_info(field_def, nodes, parent_type, path)
            try:
                if takes_args:
                    args = executor._plan_args.get(call_resolver)
                    if args is None:
                        args = executor._plan_args[call_resolver] = get_argument_values(
                            field_def, node, executor.variable_values, fragment_variables, executor.hide_suggestions
                        )
                    result = resolve(source, info, **args)
                else:
                    result = resolve(source, info)
                if executor.is_awaitable(result):
                    _close(result)
                    raise TypeError(f"{parent_name}.{name} resolved asynchronously in a synchronous execution.")
                return complete(executor, result, path, info)
            except Exception as raw_error:
                executor.handle_field_error(raw_error, return_type, details, path)
                return None

        if subscription_root:
            return call_resolver
        named = _named(return_type)
        direct = None
        if definition is not None and not takes_args and not is_abstract_type(named):
            direct = _direct_read(definition, parent_name, field_def)
        if direct is None:
            info_method = _info_method(definition, field_def) if not takes_args else None
            if info_method is None:
                return call_resolver
            return self.info_method_field(field_def, parent_type, key, details, complete, info_method)
        read = direct
        leaf = is_leaf_type(named)
        # A value of this Python type is already the JSON answer (an Int once its range is checked).
        fast_type = {str: str, bool: bool}.get(_FAST_LEAF.get(id(named))) if is_non_null_type(return_type) else None
        if getattr(read, "serialized", False):  # a node id, already the ID's serialized value
            fast_type = str
        fast_int = fast_type is None and _FAST_LEAF.get(id(named)) is int and is_non_null_type(return_type)
        attname = getattr(read, "attname", None)
        if attname is not None:

            def read_column(executor: Any, source: Any, parent_path: Path | None) -> Any:
                # `read_directly` with the column read inlined: the one field kind thousands of per page. Its tail
                # is a copy on purpose: a shared helper is one more call for ~1,400 fields of a page.
                try:
                    value = source.__dict__[attname]
                except (KeyError, AttributeError):
                    return call_resolver(executor, source, parent_path)
                if fast_type is not None and type(value) is fast_type:
                    return value
                if fast_int and type(value) is int and _INT_MIN <= value <= _INT_MAX:
                    return value
                path = None if leaf else Path(parent_path, key, parent_name)
                try:
                    return complete(executor, value, path, None)
                except Exception as raw_error:
                    executor.handle_field_error(
                        raw_error, return_type, details, path or Path(parent_path, key, parent_name)
                    )
                    return None

            return read_column

        def read_directly(executor: Any, source: Any, parent_path: Path | None) -> Any:
            try:
                value = read(source)
            except _UseResolver:
                return call_resolver(executor, source, parent_path)
            except Exception as raw_error:
                executor.handle_field_error(raw_error, return_type, details, Path(parent_path, key, parent_name))
                return None
            if fast_type is not None and type(value) is fast_type:
                return value
            if fast_int and type(value) is int and _INT_MIN <= value <= _INT_MAX:
                return value
            path = None if leaf else Path(parent_path, key, parent_name)
            try:
                return complete(executor, value, path, None)
            except Exception as raw_error:
                executor.handle_field_error(
                    raw_error, return_type, details, path or Path(parent_path, key, parent_name)
                )
                return None

        return read_directly

    def info_method_field(
        self,
        field_def: Any,
        parent_type: GraphQLObjectType,
        key: str,
        details: list,
        complete: Callable,
        call: Callable,
    ) -> Execute:
        """A method taking `self` and `info` only: called with strawberry's `Info`, as strawberry would call it."""
        return_type = field_def.type
        nodes = [d.node for d in details]
        parent_name = parent_type.name
        info_class = getattr(self.schema, "_strawberry_schema", None)
        info_class = info_class.config.info_class if info_class is not None else StrawberryInfo
        definition = _definition(field_def)

        def call_method(executor: Any, source: Any, parent_path: Path | None) -> Any:
            path = Path(parent_path, key, parent_name)
            info = executor.build_resolve_info(field_def, nodes, parent_type, path)
            try:
                result = call(source, info_class(_raw_info=info, _field=definition))
                return complete(executor, result, path, info)
            except Exception as raw_error:
                executor.handle_field_error(raw_error, return_type, details, path)
                return None

        context_only = getattr(call, "context_only", None)
        finish = getattr(call, "finish", None)
        if context_only is None or is_abstract_type(_named(return_type)):
            return call_method

        named = _named(return_type)
        leaf = is_leaf_type(named)
        fast_type = {str: str, bool: bool}.get(_FAST_LEAF.get(id(named))) if is_non_null_type(return_type) else None

        def call_with_context(executor: Any, source: Any, parent_path: Path | None) -> Any:
            # The method reads nothing of `info` but `info.context`: no info built (completion of an object or a
            # list of them does not read it either; abstract types, which do, are not on this path). A leaf's
            # path is built only for an error.
            try:
                result = context_only(source, executor._plan_light_info)
                if finish is not None and isinstance(result, BaseManager | QuerySet):
                    # strawberry-django's queryset hook reads the whole info: built for it
                    info = executor.build_resolve_info(
                        field_def, nodes, parent_type, Path(parent_path, key, parent_name)
                    )
                    result = finish(result, info_class(_raw_info=info, _field=definition))
            except Exception as raw_error:
                executor.handle_field_error(raw_error, return_type, details, Path(parent_path, key, parent_name))
                return None
            if fast_type is not None and type(result) is fast_type:
                return result
            path = None if leaf else Path(parent_path, key, parent_name)
            try:
                return complete(executor, result, path, None)
            except Exception as raw_error:
                executor.handle_field_error(
                    raw_error, return_type, details, path or Path(parent_path, key, parent_name)
                )
                return None

        return call_with_context

    def argument_method_field(
        self,
        field_def: Any,
        parent_type: GraphQLObjectType,
        key: str,
        details: list,
        complete: Callable,
        call: Callable,
    ) -> Execute:
        """A method with arguments (`messages(last:)`): its arguments are converted to Python values once per
        request, as strawberry converts them on every call (they depend on the document and the variables, not on
        the row), then the method is called as strawberry's resolver chain ends in calling it."""
        return_type = field_def.type
        node = details[0].node
        nodes = [d.node for d in details]
        parent_name = parent_type.name
        definition = _definition(field_def)
        strawberry_schema = self.schema._strawberry_schema
        info_class = strawberry_schema.config.info_class

        def call_method(executor: Any, source: Any, parent_path: Path | None) -> Any:
            path = Path(parent_path, key, parent_name)
            info = executor.build_resolve_info(field_def, nodes, parent_type, path)
            try:
                strawberry_info = info_class(_raw_info=info, _field=definition)
                arguments = executor._plan_args.get(call_method)
                if arguments is None:
                    raw = get_argument_values(
                        field_def, node, executor.variable_values, None, executor.hide_suggestions
                    )
                    arguments = executor._plan_args[call_method] = convert_arguments(
                        raw,
                        definition.arguments,
                        scalar_registry=strawberry_schema.schema_converter.scalar_registry,
                        config=strawberry_schema.config,
                        info=strawberry_info,
                    )
                result = call(source, strawberry_info, arguments)
                return complete(executor, result, path, info)
            except Exception as raw_error:
                executor.handle_field_error(raw_error, return_type, details, path)
                return None

        return call_method

    def completion(self, return_type: Any, parent_name: str, field_name: str, details: list) -> Callable:
        """complete(executor, value, path, info) -> the completed value, raising what graphql-core raises."""
        if is_non_null_type(return_type):
            message = f"Cannot return null for non-nullable field {parent_name}.{field_name}."
            if is_object_type(return_type.of_type):  # one call: the object's completion raises for a null
                return self.object_completion(return_type.of_type, details, null_message=message)
            if is_list_type(return_type.of_type):
                return self.list_completion(return_type.of_type, parent_name, field_name, details, message)
            inner = self.completion(return_type.of_type, parent_name, field_name, details)

            def complete_non_null(executor: Any, value: Any, path: Path, info: Any) -> Any:
                completed = inner(executor, value, path, info)
                if completed is None:
                    raise TypeError(message)
                return completed

            return complete_non_null
        if is_list_type(return_type):
            return self.list_completion(return_type, parent_name, field_name, details)
        if is_leaf_type(return_type):
            return _leaf_completion(return_type)
        if is_object_type(return_type):
            return self.object_completion(return_type, details)
        if is_abstract_type(return_type):
            return _graphql_core_completion(return_type, details)
        raise _NotCompiled

    def list_completion(
        self, list_type: GraphQLList, parent_name: str, field_name: str, details: list, null_message: str | None = None
    ) -> Callable:
        """`null_message`: the list is non-null, and a null raises this message (as graphql-core's)."""
        item_type = list_type.of_type
        complete_item = self.completion(item_type, parent_name, field_name, details)
        not_a_list = f"Expected Iterable, but did not find one for field '{parent_name}.{field_name}'."
        item_is_leaf = is_leaf_type(_named(item_type))

        def complete_list(executor: Any, value: Any, path: Path, info: Any) -> Any:
            if isinstance(value, Exception):
                raise value
            if value is None or value is Undefined:
                if null_message is not None:
                    raise TypeError(null_message)
                return None
            if executor.is_async_iterable(value) or not is_iterable(value):
                if executor.is_async_iterable(value):
                    raise TypeError(f"{parent_name}.{field_name} resolved asynchronously in a synchronous execution.")
                raise GraphQLError(not_a_list)
            completed = []
            append = completed.append
            is_awaitable = executor.is_awaitable
            for index, item in enumerate(value):
                item_path = Path(path, index, None)
                try:
                    if not item_is_leaf and is_awaitable(item):
                        _close(item)
                        raise TypeError(
                            f"{parent_name}.{field_name} resolved asynchronously in a synchronous execution."
                        )
                    append(complete_item(executor, item, item_path, info))
                except Exception as raw_error:
                    executor.handle_field_error(raw_error, item_type, details, item_path)
                    append(None)
            return completed

        return complete_list

    def object_completion(
        self, object_type: GraphQLObjectType, details: list, null_message: str | None = None
    ) -> Callable:
        """`null_message`: the type is non-null, and a null raises this message (as graphql-core's)."""
        execute_fields = self.subfields(object_type, details)
        is_type_of = object_type.is_type_of

        def complete_object(executor: Any, value: Any, path: Path, info: Any) -> Any:
            if isinstance(value, Exception):
                raise value
            if value is None or value is Undefined:
                if null_message is not None:
                    raise TypeError(null_message)
                return None
            # strawberry's and strawberry-django's `is_type_of` ignore their info argument.
            if is_type_of is not None and not is_type_of(value, info):
                raise invalid_return_type_error(object_type, value, details)
            return execute_fields(executor, value, path)

        return complete_object


def _named(graphql_type: Any) -> Any:
    while isinstance(graphql_type, GraphQLNonNull | GraphQLList):
        graphql_type = graphql_type.of_type
    return graphql_type


_FAST_LEAF = {id(GraphQLString): str, id(GraphQLInt): int, id(GraphQLBoolean): bool}


def _leaf_completion(leaf_type: Any) -> Callable:
    fast = _FAST_LEAF.get(id(leaf_type))
    coerce_leaf = StrawberryGraphQLCoreExecutionContext.complete_leaf_value
    if getattr(leaf_type, "coerce_output_value", None) is base_scalars.isoformat:

        def complete_isoformat(executor: Any, value: Any, path: Path, info: Any) -> Any:
            # strawberry's Date and DateTime: `value.isoformat()`, which is never null.
            if type(value) is dt.datetime or type(value) is dt.date:
                return value.isoformat()
            if isinstance(value, Exception):
                raise value
            if value is None or value is Undefined:
                return None
            return coerce_leaf(leaf_type, value)

        return complete_isoformat
    if isinstance(leaf_type, GraphQLEnumType):
        names: dict[tuple[type, Any], Any] = {}

        def complete_enum(executor: Any, value: Any, path: Path, info: Any) -> Any:
            # An enum value's name depends on the value alone: found once (strawberry compares it with each value
            # of the enum in turn), then looked up; a value that is not the enum's raises every time.
            try:
                return names[type(value), value]
            except (KeyError, TypeError):
                pass
            if isinstance(value, Exception):
                raise value
            if value is None or value is Undefined:
                return None
            name = coerce_leaf(leaf_type, value)
            if len(names) < 64:
                with contextlib.suppress(TypeError):  # an unhashable value is not kept
                    names[type(value), value] = name
            return name

        return complete_enum

    def complete_leaf(executor: Any, value: Any, path: Path, info: Any) -> Any:
        if type(value) is fast and (fast is not int or _INT_MIN <= value <= _INT_MAX):
            return value
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return None
        return coerce_leaf(leaf_type, value)

    return complete_leaf


def _graphql_core_completion(abstract_type: Any, details: list) -> Callable:
    """An interface or union value completed by graphql-core (its type resolution and sub-selections)."""

    def complete_abstract(executor: Any, value: Any, path: Path, info: Any) -> Any:
        return executor.complete_value(abstract_type, details, info, path, value, None)

    return complete_abstract


def _delegated(parent_type: GraphQLObjectType, key: str, details: list) -> Execute:
    parent_name = parent_type.name

    def execute_by_graphql_core(executor: Any, source: Any, parent_path: Path | None) -> Any:
        result = executor.execute_field(parent_type, source, details, Path(parent_path, key, parent_name), None)
        if executor.is_awaitable(result):
            _close(result)
            raise GraphQLError(f"{parent_name}.{key} resolved asynchronously in a synchronous execution.")
        return result

    return execute_by_graphql_core


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


# ---- fields read without the resolver chain -------------------------------------------------------------------


class _UseResolver(Exception):
    """The row does not carry what the direct read needs: the field's resolver answers."""


def _direct_read(definition: Any, type_name: str, field_def: Any) -> Callable[[Any], Any] | None:
    """How to answer a field straight from its source (None: the resolver chain answers it): the same fields
    `graph.fast_fields` answers directly, decided the same way."""
    if fast_fields.is_node_id(definition):
        prefix = f"{type_name}:"

        def node_id(source: Any) -> str:
            # The serialized GlobalID(type_name, str(pk)) (strawberry's `to_base64`), without building the object.
            if isinstance(source, models.Model):
                pk = source.__dict__.get(source._meta.pk.attname)
                if pk is not None:
                    return b64encode(f"{prefix}{pk}".encode()).decode()
            raise _UseResolver

        node_id.serialized = True
        return node_id
    function = fast_fields.self_only_function(definition)
    if function is not None:
        return function
    if _plain_attribute(definition, field_def):
        return attrgetter(definition.python_name)
    attname = fast_fields.column_attname(definition) if isinstance(definition, StrawberryDjangoField) else None
    if attname is not None:

        def column(source: Any) -> Any:
            try:
                return source.__dict__[attname]
            except (KeyError, AttributeError):
                raise _UseResolver from None

        column.attname = attname  # the plan reads it inline (`read_column`)
        return column
    return None


def _plain_attribute(definition: Any, field_def: Any) -> bool:
    """A strawberry field with no resolver on a plain object (a connection, an edge, page info): strawberry's basic
    field reads the attribute with the default resolver, `getattr`."""
    return (
        type(definition) is StrawberryField
        and definition.base_resolver is None
        and not definition.extensions
        and not getattr(definition, "permission_classes", None)
        and getattr(field_def.resolve, "_is_default", False)
        and definition.default_resolver is getattr
    )


def _info_method(definition: Any, field_def: Any) -> Callable[[Any, Any], Any] | None:
    """`call(source, strawberry_info)` for a synchronous method taking `self` and `info` and nothing else, with no
    extensions or permission classes: what strawberry's resolver chain ends in (`get_arguments` puts the source
    first and the info by its parameter name; strawberry-django then turns a manager or queryset into rows)."""
    resolver = getattr(definition, "base_resolver", None)
    if resolver is None or definition.extensions or getattr(definition, "permission_classes", None):
        return None
    if resolver.is_async or resolver.arguments or resolver.root_parameter or resolver.parent_parameter:
        return None
    if resolver.self_parameter is None or resolver.info_parameter is None or definition.is_async:
        return None
    function = resolver.wrapped_func
    if not inspect.isfunction(function) or getattr(field_def.resolve, "_is_default", False):
        return None
    info_name = resolver.info_parameter.name
    if not isinstance(definition, StrawberryDjangoField):
        call = lambda source, info: function(source, **{info_name: info})  # noqa: E731
        if _reads_only_context(function, info_name):
            call.context_only = call
        return call

    def finish(result: Any, info: Any) -> Any:
        if isinstance(result, BaseManager):
            result = resolve_base_manager(result)
        if isinstance(result, QuerySet):
            result = definition.get_queryset_hook(info=info)(result)
        return result

    def call_django_field(source: Any, info: Any) -> Any:
        return finish(function(source, **{info_name: info}), info)

    if _reads_only_context(function, info_name):
        call_django_field.context_only = lambda source, light: function(source, **{info_name: light})
        call_django_field.finish = finish
    return call_django_field


def _argument_method(definition: Any, field_def: Any, schema: Any) -> Callable[[Any, Any, dict], Any] | None:
    """`call(source, strawberry_info, converted_arguments)` for a synchronous method taking `self`, arguments and
    perhaps `info`, with no extensions, permission classes or exception handlers: what strawberry's chain ends in
    (`get_arguments` puts the source first and the info by its parameter name, the converted arguments by their
    Python names; strawberry-django then turns a manager or queryset into rows)."""
    resolver = getattr(definition, "base_resolver", None)
    if resolver is None or definition.extensions or getattr(definition, "permission_classes", None):
        return None
    if resolver.is_async or definition.is_async or resolver.root_parameter or resolver.parent_parameter:
        return None
    if resolver.self_parameter is None or getattr(field_def.resolve, "_is_default", False):
        return None
    converter = getattr(getattr(schema, "_strawberry_schema", None), "schema_converter", None)
    if converter is None or converter._get_field_exception_handlers(definition):
        return None
    function = resolver.wrapped_func
    if not inspect.isfunction(function):
        return None
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None

    def call(source: Any, info: Any, arguments: dict) -> Any:
        if info_name is None:
            return function(source, **arguments)
        return function(source, **arguments, **{info_name: info})

    if not isinstance(definition, StrawberryDjangoField):
        return call

    def call_django_field(source: Any, info: Any, arguments: dict) -> Any:
        result = call(source, info, arguments)
        if isinstance(result, BaseManager):
            result = resolve_base_manager(result)
        if isinstance(result, QuerySet):
            result = definition.get_queryset_hook(info=info)(result)
        return result

    return call_django_field


class _ContextOnly:
    """What a method that reads only `info.context` is given instead of an `Info`."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


def _reads_only_context(function: Any, info_name: str) -> bool:
    """Whether the function's only use of its `info` parameter is reading `info.context` (every load of the name
    is followed by that attribute read; not reassigned, not captured by an inner function or lambda). Read from
    the bytecode, so a resolver is recognised without marking it; one that passes `info` on is not."""
    code = function.__code__
    if info_name in code.co_cellvars or info_name not in code.co_varnames:
        return False
    instructions = list(dis.get_instructions(code))
    for index, instruction in enumerate(instructions):
        if isinstance(instruction.argval, tuple) and info_name in instruction.argval:
            return False  # a superinstruction loading two names at once (LOAD_FAST_LOAD_FAST, 3.13+): not read here
        if instruction.argval != info_name:
            continue
        if instruction.opname in ("STORE_FAST", "DELETE_FAST"):
            return False
        if instruction.opname.startswith("LOAD_FAST"):
            following = instructions[index + 1] if index + 1 < len(instructions) else None
            if following is None or following.opname != "LOAD_ATTR" or following.argval != "context":
                return False
    return True
