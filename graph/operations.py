"""Which operation of a document runs, decided alike for HTTP and the WebSocket, with messages that say what to
send instead. Both transports refuse the same documents with the same words (VALIDATION_ERROR)."""

from __future__ import annotations

from functools import lru_cache

from graphql import DocumentNode, GraphQLError, OperationType, parse
from graphql.utilities import get_operation_ast

from core.errors import ErrorCode
from graph.errors import format_error

SUBSCRIPTIONS_OVER_HTTP = "Subscriptions run over WebSocket (graphql-transport-ws) on this path."


def operation_choice_message(operation_name: str | None) -> str:
    if operation_name is None:
        return "Send a document with one operation, or name the operation to run in operationName."
    return f'The document has no operation named "{operation_name}": send one of its operation names as operationName.'


class DocumentRefused(Exception):
    """A document that cannot run at all; `errors` are in the SPEC shape (`extensions.code` set)."""

    def __init__(self, errors: list[GraphQLError]) -> None:
        super().__init__(errors[0].message)
        self.errors = errors


def validation_error(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": ErrorCode.VALIDATION_ERROR.value})


def _refusal(message: str) -> DocumentRefused:
    return DocumentRefused([validation_error(message)])


@lru_cache(maxsize=256)
def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def operation_type(query: object, operation_name: object, *, max_tokens: int) -> OperationType:
    """The type of the operation `operation_name` selects in `query`, or DocumentRefused: a syntax error or too
    many tokens get the codes HTTP gives them (VALIDATION_ERROR, QUERY_TOO_COMPLEX)."""
    if not isinstance(query, str) or not query.strip():
        raise _refusal("Send the GraphQL document as a non-empty string in query.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise _refusal("operationName must be a string (the name of an operation of the document) or null.")
    try:
        document = _parse(query, max_tokens)
    except GraphQLError as error:
        raise DocumentRefused([format_error(error)])
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        raise _refusal(operation_choice_message(operation_name))
    return operation.operation
