"""Limits on what one GraphQL document may ask, checked before any resolver runs.

`MaxFieldsLimiter` counts field selections right after parsing (one linear walk, fragments expanded),
so a hostile document is refused before graphql-core's quadratic validation rules. Introspection is
decided per request from settings, so it follows `MAILBOX["GRAPHQL_INTROSPECTION"]` without a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension

from core.errors import ErrorCode


def count_selected_fields(document: DocumentNode, limit: int) -> int:
    """Field selections of the document with fragments expanded where they are spread, stopping past `limit`.

    One linear walk of the parsed document (each fragment counted once and memoised), so a hostile
    document is refused before the quadratic validation rules and before any resolver runs.
    """
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    sizes: dict[str, int] = {}

    def size(selection_set: SelectionSetNode | None, visiting: frozenset[str]) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total += 1 + size(selection.selection_set, visiting)
            elif isinstance(selection, InlineFragmentNode):
                total += size(selection.selection_set, visiting)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visiting or name not in fragments:
                    continue  # cycles and unknown fragments are reported by validation
                if name not in sizes:
                    sizes[name] = size(fragments[name].selection_set, visiting | {name})
                total += sizes[name]
            if total > limit:
                return total
        return total

    return sum(
        size(d.selection_set, frozenset()) for d in document.definitions if isinstance(d, OperationDefinitionNode)
    )


class MaxFieldsLimiter(SchemaExtension):
    """Refuses documents selecting more than `max_fields` fields (e.g. a thousand `__typename`)."""

    def __init__(self, *, max_fields: int) -> None:
        self.max_fields = max_fields

    def on_parse(self) -> Iterator[None]:
        yield
        document = self.execution_context.graphql_document
        if document is not None and count_selected_fields(document, self.max_fields) > self.max_fields:
            raise GraphQLError(
                f"The query selects more than {self.max_fields} fields. Ask for fewer fields or page through "
                "the results.",
                extensions={"code": ErrorCode.QUERY_TOO_COMPLEX.value},
            )


class IntrospectionSwitch(SchemaExtension):
    """Introspection only when `settings.MAILBOX["GRAPHQL_INTROSPECTION"]` is on (by default: DEBUG)."""

    def on_operation(self) -> Iterator[None]:
        if not settings.MAILBOX["GRAPHQL_INTROSPECTION"]:
            context = self.execution_context
            context.validation_rules = (*context.validation_rules, NoSchemaIntrospectionCustomRule)
        yield


def response_too_large(size: int, limit: int) -> dict[str, Any]:
    return {
        "data": None,
        "errors": [
            {
                "message": f"The answer is {size:,} bytes, over the limit of {limit:,}. Ask for fewer fields or "
                "smaller pages (first/last) and page through the rest.",
                "extensions": {"code": ErrorCode.QUERY_TOO_COMPLEX.value, "responseBytes": size, "limit": limit},
            }
        ],
    }


def bounded_json(message: Any, encode: Callable[[Any], bytes], *, wrapped: bool) -> bytes:
    """The encoded answer (UTF-8 bytes), or a QUERY_TOO_COMPLEX error in its place when it passes
    `MAILBOX["RESPONSE_MAX_BYTES"]`. `wrapped`: a graphql-transport-ws message, whose payload is the answer.

    The cost limit bounds rows, not bytes (a message body holds up to 20,000 characters).
    """
    encoded = encode(message)
    limit = settings.MAILBOX["RESPONSE_MAX_BYTES"]
    if len(encoded) <= limit:
        return encoded
    if wrapped:
        if not (isinstance(message, dict) and message.get("type") == "next"):
            return encoded  # protocol messages carry no answer
        return encode({**message, "payload": response_too_large(len(encoded), limit)})
    return encode(response_too_large(len(encoded), limit))
