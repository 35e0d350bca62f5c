"""Hands every refused field of a signed-in caller to `core.refusals.record_refusal`, with what was asked.

Listed after `DomainErrors` in the schema's extensions: operation hooks exit in reverse order, so this one
still sees the original `DomainError`s before they are turned into the SPEC error shape. The refused
operation has rolled back by then; core writes the refusal in its own short transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from functools import partial

from channels.db import database_sync_to_async
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, value_from_ast_untyped
from strawberry import relay
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from core import refusals
from core.context import current_request
from core.errors import DomainError

log = logging.getLogger(__name__)
_pending: set[asyncio.Task] = set()  # keeps background audit writes alive until they finish


def field_arguments(node: FieldNode | None, variables: dict | None) -> dict:
    if node is None:
        return {}
    values = {}
    for argument in node.arguments or ():
        try:
            values[argument.name.value] = value_from_ast_untyped(argument.value, variables or {})
        except Exception:  # an undefined variable: the argument simply was not given
            continue
    return values


def asked_records(arguments: dict) -> list[tuple[str, int]]:
    """The records an operation asked for, from its ID arguments (malformed ids are skipped)."""
    found = []
    for name, value in arguments.items():
        if not (name == "id" or name.endswith(("Id", "Ids"))):
            continue
        for item in value if isinstance(value, list) else [value]:
            try:
                gid = relay.GlobalID.from_id(str(item))
                found.append((gid.type_name, int(gid.node_id)))
            except Exception:
                continue
    return found


def _root_field(execution_context, response_key: object) -> FieldNode | None:
    document = execution_context.graphql_document
    if document is None:
        return None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode) and (selection.alias or selection.name).value == response_key:
                    return selection
    return None


def _refusals(execution_context, errors: list[GraphQLError]) -> list[partial]:
    context = execution_context.context
    user, patient = getattr(context, "user", None), getattr(context, "patient", None)
    if user is None and patient is None:
        return []
    mutation = execution_context.operation_type == OperationType.MUTATION
    variables = execution_context.variables
    seen: set[tuple] = set()
    records = []
    for error in errors:
        original = error.original_error
        if not isinstance(original, DomainError) or original.code.value not in refusals.AUDITED_REFUSALS:
            continue
        field = error.nodes[0] if error.nodes and isinstance(error.nodes[0], FieldNode) else None
        root = (_root_field(execution_context, error.path[0]) if error.path else None) or field
        arguments = field_arguments(root, variables)
        operation = root.name.value if root is not None else "unknown"
        if field is not None and root is not None and field is not root:
            operation = f"{operation}.{field.name.value}"
            arguments.update(field_arguments(field, variables))
        key = (operation, original.code.value, repr(sorted(arguments.items(), key=str)))
        if key in seen:
            continue
        seen.add(key)
        records.append(
            partial(
                refusals.record_refusal,
                operation=operation,
                code=original.code.value,
                mutation=mutation,
                actor_user=user,
                actor_patient=patient,
                targets=asked_records(arguments),
                arguments=arguments,
                via=str(arguments.get("via") or ""),
                path=list(error.path or []),
            )
        )
    return records


def _write(records: list[partial]) -> None:
    for record in records:
        try:
            record()
        except Exception:
            log.exception("could not audit a refused operation [request %s]", current_request().request_id)


class AuditRefusals(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None) if result is not None else None
        records = _refusals(self.execution_context, errors) if errors else []
        if not records:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _write(records)
        else:  # operations over WebSocket run in the event loop: write from a worker thread
            task = loop.create_task(database_sync_to_async(_write)(records))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
