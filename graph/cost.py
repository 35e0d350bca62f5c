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
    ArgumentNode,
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
    VariableNode,
    Visitor,
    get_named_type,
    get_operation_ast,
    is_composite_type,
    value_from_ast,
    visit,
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


def _page_variables(document: DocumentNode) -> tuple[str, ...]:
    """The variables the document passes as a `first` or `last`: the only ones an estimate depends on."""
    names: set[str] = set()

    class Pages(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            if node.name.value in ("first", "last") and isinstance(node.value, VariableNode):
                names.add(node.value.name.value)

    visit(document, Pages())
    return tuple(sorted(names))


# Estimates per (document, operation, the settings they use): the page variables' names and an estimate per
# their values. Documents come from the parser's cache, so one document text is one object; each is held here.
_ESTIMATES: dict[tuple, tuple[DocumentNode, tuple[str, ...], dict[tuple, int]]] = {}
_MOST_DOCUMENTS = 256
_MOST_VALUES = 64


def cached_estimate(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    stop_above: int,
) -> int:
    """`estimate_rows`, computed once per document and values of its page variables (the walk was 5 % of a
    search page's CPU)."""
    mailbox = settings.MAILBOX
    key = (id(document), operation_name, stop_above, mailbox["PAGE_MAX_SIZE"], mailbox["SEARCH_MAX_RESULTS"])
    entry = _ESTIMATES.get(key)
    if entry is None or entry[0] is not document:
        if len(_ESTIMATES) >= _MOST_DOCUMENTS:
            _ESTIMATES.clear()
        entry = _ESTIMATES[key] = (document, _page_variables(document), {})
    _, names, by_values = entry
    given = variables or {}
    found = [given.get(name) for name in names]
    # Only page sizes as they come (numbers, null) are kept: a variable's value reaches here before graphql-core
    # refuses a wrong type, and a long string or a list would make the cache hold what a caller sent.
    cacheable = all(value is None or type(value) in (int, float) for value in found)
    values = tuple((type(value), value) for value in found)  # 5 and 5.0 are one key otherwise
    estimate = by_values.get(values) if cacheable else None
    if estimate is None:
        estimate = estimate_rows(
            schema, document, operation_name=operation_name, variables=variables, stop_above=stop_above
        )
        if cacheable and len(by_values) < _MOST_VALUES:
            by_values[values] = estimate
    return estimate


class MaxCostLimiter(SchemaExtension):
    """Refuses, before any resolver runs, an operation whose estimated rows pass `MAILBOX["QUERY_MAX_COST"]`."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
            limit = settings.MAILBOX["QUERY_MAX_COST"]
            estimate = cached_estimate(
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
