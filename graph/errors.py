"""Turns every error into the SPEC §3 shape: `extensions.code` and a message that says what to do.

Domain refusals keep their code and message. Documents refused by the abuse limits become
QUERY_TOO_COMPLEX; other invalid documents (syntax, unknown fields, bad variables) VALIDATION_ERROR.
Anything unexpected is masked, logged with a correlation id, and the answer carries that id
(`extensions.requestId`, also the `X-Request-ID` response header) so support can find the log line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from django.conf import settings
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from core.context import current_request
from core.errors import DomainError, ErrorCode

log = logging.getLogger("graph.errors")

_TOO_COMPLEX_MARKERS = (
    "exceeds maximum operation depth",
    "aliases found",
    "token limit",
    "too many",
    "parsing aborted",
)


# graphql-core's "Did you mean 'mailbox' or 'mailboxes'?" (fields, arguments, types, enum values, input fields).
# Its `hide_suggestions` switch is not reachable through strawberry's validation and execution calls.
_SUGGESTION = re.compile(r" Did you mean [^?]*\?")
# graphql-core names a value it cannot coerce by its Python class ("<InMemoryUploadedFile instance>"): only a
# multipart file can get there, and the class name is an internal.
_PYTHON_OBJECT = re.compile(r"<\w+ instance>")


def _classify_document_error(error: GraphQLError) -> tuple[str, str]:
    text = error.message.lower()
    message = error.message
    if not settings.MAILBOX["GRAPHQL_INTROSPECTION"]:
        # Suggestions describe the schema to anyone who sends a typo, anonymous callers included.
        message = _SUGGESTION.sub("", message)
    if any(marker in text for marker in _TOO_COMPLEX_MARKERS):
        return ErrorCode.QUERY_TOO_COMPLEX, f"{message} Simplify the query (fewer aliases, less nesting)."
    if _PYTHON_OBJECT.search(message):
        message = _PYTHON_OBJECT.sub("a file", message)
        return ErrorCode.VALIDATION_ERROR, f"{message}. Send files only for arguments of type Upload (attachments)."
    return ErrorCode.VALIDATION_ERROR, message


def _cause(error: GraphQLError) -> BaseException | None:
    """What the error reports: a refusal, a document error (a GraphQLError or nothing), or a fault of ours."""
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    return original


def format_error(error: GraphQLError) -> GraphQLError:
    """Idempotent: an error that already carries a code is returned unchanged. A refusal or a document the schema
    refuses (syntax, unknown fields, variables that do not coerce) is the caller's doing, answered with its code;
    anything else is a fault of ours, masked and logged here, once per error (the only record of it)."""
    original = _cause(error)
    if isinstance(original, DomainError):
        extensions = {"code": original.code.value, **{k: v for k, v in original.extra.items() if v is not None}}
        message = original.message
    elif original is None or isinstance(original, GraphQLError):
        if error.extensions and "code" in error.extensions:
            return error
        code, message = _classify_document_error(error)
        extensions = {"code": code}
    else:
        request_id = current_request().request_id
        log.error("unexpected error in %s [request %s]", error.path, request_id, exc_info=original)
        message = f"Something went wrong on our side. Quote reference {request_id} to support."
        extensions = {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


class DomainErrors(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        # Strawberry puts an execution's errors in both the result and `pre_execution_errors` (the same list):
        # each error is formatted, and an unexpected one logged, once.
        formatted: dict[int, GraphQLError] = {}

        def once(error: GraphQLError) -> GraphQLError:
            if id(error) not in formatted:
                formatted[id(error)] = format_error(error)
            return formatted[id(error)]

        result = self.execution_context.result
        if result is not None and getattr(result, "errors", None):
            result.errors = [once(e) for e in result.errors]
        errors = getattr(self.execution_context, "pre_execution_errors", None)
        if errors:
            self.execution_context.pre_execution_errors = [once(e) for e in errors]
