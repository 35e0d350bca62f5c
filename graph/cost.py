"""The estimated cost of a document: how many rows it can make the server load and answer.

The field, alias and depth limits bound the document's text, not its answer: `conversations(first: 100) {
edges { node { messages(last: 100) { … } } } }` is a few dozen fields and ten thousand messages. The estimate
multiplies page sizes through nesting: each item of a page or list counts one row, times the items of every
list above it. A connection's page is its `first`/`last` (from the document or its variables, capped at
`PAGE_MAX_SIZE` as the server caps it), or the default page when neither is given; a list without paging
counts `LIST_ESTIMATE` items.

It is checked when the operation is about to execute, not as a validation rule: validation results are
cached per document, and the estimate depends on each request's variables (`first: $n`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
    is_composite_type,
    value_from_ast,
)
from graphql.language import OperationType
from strawberry.extensions import SchemaExtension

from core.errors import ErrorCode
from graph.pagination import DEFAULT_PAGE

# Lists without paging (a mailbox's subscribers, a practice's mailboxes, a patient's conversations): most are
# short, and the few long ones (mailboxes) are cheap rows. A message carries at most 10 attachments and nearly
# always none or one: counting 10 would make attachments, loaded in one query per page, outweigh the messages.
LIST_ESTIMATE = 10
LIST_ESTIMATES = {"attachments": 1}


def _page_argument(field: FieldNode, definition: GraphQLField, variables: dict[str, Any]) -> int | None:
    """The `first` or `last` the field asks for, None when it gives neither (or gives something invalid,
    which validation or the resolver refuses anyway)."""
    for argument in field.arguments or ():
        name = argument.name.value
        if name not in ("first", "last") or name not in definition.args:
            continue
        try:
            value = value_from_ast(argument.value, definition.args[name].type, variables)
        except Exception:  # an undefined variable: the argument was not given
            continue
        if isinstance(value, float) and value.is_integer():  # graphql-core accepts 100.0 as an Int
            value = int(value)
        if type(value) is int:
            return max(value, 0)
    for name in ("first", "last"):
        default = definition.args[name].default_value if name in definition.args else None
        if type(default) is int:
            return max(default, 0)
    return None


def _is_connection(definition: GraphQLField) -> bool:
    named = get_named_type(definition.type)
    return isinstance(named, GraphQLObjectType) and "edges" in named.fields and "first" in definition.args


def _is_list_of_objects(definition: GraphQLField) -> bool:
    """Lists of scalars (a membership's permissions) are values of their row, not rows."""
    field_type = definition.type
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList) and is_composite_type(get_named_type(field_type))


def estimate_rows(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    stop_above: int,
) -> int:
    """Estimated rows of the operation's answer; stops counting once past `stop_above`."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    root = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }.get(operation.operation)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    variables = variables or {}
    page_max = settings.MAILBOX["PAGE_MAX_SIZE"]
    default_page = min(DEFAULT_PAGE, page_max)
    search_max = settings.MAILBOX["SEARCH_MAX_RESULTS"]
    total = 0

    def walk(parent: Any, selection_set: SelectionSetNode | None, times: int, page: int | None, seen: frozenset):
        nonlocal total
        for selection in selection_set.selections if selection_set else ():
            if total > stop_above:
                return
            if isinstance(selection, FieldNode):
                fields = getattr(parent, "fields", None) or {}
                definition = fields.get(selection.name.value)
                if definition is None:  # __typename, introspection, or an interface field: no rows of ours
                    continue
                asked = _page_argument(selection, definition, variables)
                if _is_connection(definition):
                    inner_page = default_page if asked is None else min(asked, page_max)
                    walk(get_named_type(definition.type), selection.selection_set, times, inner_page, seen)
                    continue
                items = times
                if _is_list_of_objects(definition):
                    if selection.name.value == "edges" and page is not None:
                        items = times * page
                    elif asked is not None:  # a plain list with a size (searchPatients)
                        items = times * min(asked, search_max)
                    else:
                        items = times * LIST_ESTIMATES.get(selection.name.value, LIST_ESTIMATE)
                    total += items
                walk(get_named_type(definition.type), selection.selection_set, items, None, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema.get_type(condition.name.value) if condition else parent
                walk(target or parent, selection.selection_set, times, page, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in seen:  # unknown fragments and cycles are refused by validation
                    continue
                target = schema.get_type(fragment.type_condition.name.value) or parent
                walk(target, fragment.selection_set, times, page, seen | {name})

    walk(root, operation.selection_set, 1, None, frozenset())
    return total


class MaxCostLimiter(SchemaExtension):
    """Refuses, before any resolver runs, an operation whose estimated rows pass `MAILBOX["QUERY_MAX_COST"]`."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
            limit = settings.MAILBOX["QUERY_MAX_COST"]
            estimate = estimate_rows(
                context.schema._schema,
                document,
                operation_name=context.operation_name,
                variables=context.variables,
                stop_above=limit,
            )
            if estimate > limit:
                raise GraphQLError(
                    f"This query could load about {estimate:,} rows or more; the limit is {limit:,}. Ask for "
                    "smaller pages (first/last), fewer nested lists or fewer aliases, and page through the rest.",
                    extensions={"code": ErrorCode.QUERY_TOO_COMPLEX.value, "estimatedRows": estimate, "limit": limit},
                )
        yield
