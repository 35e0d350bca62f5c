"""Direct resolvers for the fields that only read a loaded column, methods that need nothing but the row, and
node ids.

A page of 50 conversations with their newest messages resolves thousands of fields. strawberry and
strawberry-django route each of them through a general resolver chain (arguments, an `Info` object, extensions,
sync/async checks), which costs several times what reading the attribute or calling the method does. A method
taking only `self` (`fullName`, `senderName`, `unreadCount`) is called directly. The rows our reads return
already carry every column (`core.reads` loads them whole), so column fields read the instance's `__dict__`; any
value that is not there (a deferred column, a non-model source) still goes the original way. Node ids are
`GlobalID(type name, primary key)`, as strawberry-django builds them. Where strawberry-django still resolves an
id itself (`Type.resolve_id`), it finds the id attribute from the `pk: relay.NodeID[int]` every node type of
`graph/<domain>/types.py` declares (private: not a schema field), scanning the annotations once and then keeping
it; a type without one was scanned (with `eval`) on every id, a quarter of a large page's CPU time once.

Nothing here changes an answer: `tests/api/test_fast_fields.py` resolves every type both ways.

Queries and subscription events now run from a plan (`graph.compiled`), which decides which fields it reads directly
with the functions below (`is_node_id`, `self_only_function`, `column_attname`) and never calls these replaced
resolvers on its direct path. They stay for what graphql-core still executes: mutations (their payloads), the
objects under an interface or union (none in this schema, where `Node` is only implemented), and everything when
plans are off (`GRAPHQL_PLANS=0`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute
from graphql import GraphQLObjectType, GraphQLSchema
from strawberry import relay
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry_django.fields.field import StrawberryDjangoField

Resolver = Callable[..., Any]


def _column_resolver(attname: str, fallback: Resolver) -> Resolver:
    def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        try:
            return source.__dict__[attname]
        except (KeyError, AttributeError):
            return fallback(source, info, **kwargs)

    resolve.fast_field = attname  # for the tests
    return resolve


def _node_id_resolver(type_name: str, fallback: Resolver) -> Resolver:
    def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        if isinstance(source, models.Model):
            pk = source.__dict__.get(source._meta.pk.attname)
            if pk is not None:
                return relay.GlobalID(type_name=type_name, node_id=str(pk))
        return fallback(source, info, **kwargs)

    resolve.fast_field = "id"
    return resolve


def _method_resolver(function: Callable[[Any], Any], fallback: Resolver) -> Resolver:
    def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        return function(source)

    resolve.fast_field = function.__name__
    resolve.original = fallback  # for the tests
    return resolve


def self_only_function(field: Any) -> Callable[[Any], Any] | None:
    """The function of a `@strawberry.field` method that takes nothing but `self` (no info, no arguments)."""
    resolver = getattr(field, "base_resolver", None)
    if resolver is None or getattr(field, "extensions", None) or getattr(field, "permission_classes", None):
        return None
    if resolver.is_async or resolver.arguments or resolver.info_parameter or resolver.root_parameter:
        return None
    if resolver.parent_parameter or resolver.self_parameter is None:
        return None
    function = resolver.wrapped_func
    return function if inspect.isfunction(function) else None


def column_attname(field: StrawberryDjangoField) -> str | None:
    """The attribute a plain column field reads, or None if the field computes anything."""
    model = getattr(field.origin_django_type, "model", None)
    if model is None or field.base_resolver is not None or field.extensions or field.is_relation:
        return None
    if getattr(field, "permission_classes", None):
        return None
    attr = getattr(model, field.django_name or field.python_name, None)
    if not isinstance(attr, DeferredAttribute) or isinstance(attr.field, models.FileField):
        return None
    return attr.field.attname


def install(schema: GraphQLSchema) -> int:
    """Replaces the resolvers of plain column fields, self-only methods and node ids; returns how many."""
    replaced = 0
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for name, graphql_field in graphql_type.fields.items():
            definition = (graphql_field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if graphql_field.resolve is None or definition is None:
                continue
            if name == "id" and is_node_id(definition):
                graphql_field.resolve = _node_id_resolver(graphql_type.name, graphql_field.resolve)
                replaced += 1
            elif (function := self_only_function(definition)) is not None:
                graphql_field.resolve = _method_resolver(function, graphql_field.resolve)
                replaced += 1
            elif isinstance(definition, StrawberryDjangoField):
                attname = column_attname(definition)
                if attname is not None:
                    graphql_field.resolve = _column_resolver(attname, graphql_field.resolve)
                    replaced += 1
    return replaced


def _resolver_function(field: Any) -> Any:
    wrapped = getattr(getattr(field, "base_resolver", None), "wrapped_func", None)
    return getattr(wrapped, "__func__", wrapped)


_NODE_ID = _resolver_function(next(f for f in relay.Node.__strawberry_definition__.fields if f.python_name == "_id"))


def is_node_id(definition: Any) -> bool:
    """The `id` strawberry's `relay.Node` declares (not an `id` a type resolves its own way)."""
    return _resolver_function(definition) is _NODE_ID
