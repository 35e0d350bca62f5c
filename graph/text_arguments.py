"""Refuses NUL characters and lone surrogates in every string argument, before any resolver runs.

JSON can carry both (`"\\u0000"`, `"\\udc00"`), but PostgreSQL text cannot hold NUL and a lone surrogate cannot
be encoded as UTF-8: such a value used to fail only when written, as a server error, and SQLite stored it. One
check over the request's variables and the document's string literals covers every argument of every operation
(HTTP and WebSocket alike); the domain layer repeats it for callers that do not come through GraphQL.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    visit,
)
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension

from core.errors import ErrorCode
from core.text import has_unstorable_characters, unstorable_text_message


def _has_bad_string(value: object) -> bool:
    # Iterative: variables can be nested as deep as the JSON decoder allows.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if has_unstorable_characters(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _values_in(node: ValueNode) -> Iterator[ValueNode]:
    pending = [node]
    while pending:
        item = pending.pop()
        yield item
        if isinstance(item, ListValueNode):
            pending.extend(item.values)
        elif isinstance(item, ObjectValueNode):
            pending.extend(field.value for field in item.fields)


class _ArgumentFinder(Visitor):
    """The first argument holding a bad string literal, or using the variable `variable`."""

    def __init__(self, variable: str | None) -> None:
        super().__init__()
        self.variable = variable
        self.found: str | None = None

    def enter_variable_definition(self, node, *_args) -> object:
        """A variable's default value is a literal too (it is used when the request sends no value)."""
        if self.variable is None and node.default_value is not None:
            for value in _values_in(node.default_value):
                if isinstance(value, StringValueNode) and has_unstorable_characters(value.value):
                    self.found = node.variable.name.value
                    return self.BREAK
        return None

    def enter_argument(self, node: ArgumentNode, *_args) -> object:
        for value in _values_in(node.value):
            if self.variable is None:
                hit = isinstance(value, StringValueNode) and has_unstorable_characters(value.value)
            else:
                hit = isinstance(value, VariableNode) and value.name.value == self.variable
            if hit:
                self.found = node.name.value
                return self.BREAK
        return None


def _argument_name(document: DocumentNode, variable: str | None) -> str | None:
    finder = _ArgumentFinder(variable)
    visit(document, finder)
    return finder.found


def _declared_variables(document: DocumentNode) -> list[str]:
    return [
        definition.variable.name.value
        for operation in document.definitions
        if isinstance(operation, OperationDefinitionNode)
        for definition in operation.variable_definitions or ()
    ]


def _refusal(field: str) -> GraphQLError:
    return GraphQLError(
        unstorable_text_message(field),
        extensions={"code": ErrorCode.VALIDATION_ERROR.value, "field": field},
    )


class UnstorableTextGuard(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        variables = context.variables or {}
        # Only declared variables reach arguments; the rest are ignored, however many a request sends.
        for name in _declared_variables(context.graphql_document) if variables else ():
            if name in variables and _has_bad_string(variables[name]):
                raise _refusal(_argument_name(context.graphql_document, name) or name)
        # A literal can only hold NUL through an escape (the lexer refuses raw NUL and lone surrogates), so
        # documents without "\u" skip the walk.
        if context.query and "\\u" in context.query:
            field = _argument_name(context.graphql_document, None)
            if field is not None:
                raise _refusal(field)
        yield
