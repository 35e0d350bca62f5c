"""Tells the request's log line and metrics (`ops.requests`) what only execution knows: the operation's name and
type, who asked (ids), and the error codes answered. First in the schema's extensions, so it exits last and
sees the errors already in the SPEC shape."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from ops import requests


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ObserveOperation(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        # Known once the document is parsed; a subscription ends by cancellation, past on_operation's exit.
        stats = requests.current()
        if stats is not None:
            self._record(stats, errors=())
        yield

    def on_operation(self) -> Iterator[None]:
        stats = requests.current()
        if stats is None:  # executed outside a request (tests calling the schema, the live executor)
            yield
            return
        # Over HTTP the middleware counts the whole request; a socket's query runs on a worker thread of its own.
        counting = stats.transport == "ws" and not _in_event_loop()
        with requests.counting_queries(stats) if counting else contextlib.nullcontext():
            yield
        context = self.execution_context
        # Strawberry puts an execution's errors in both; before execution only pre_execution_errors has them.
        errors = getattr(context.result, "errors", None) if context.result is not None else context.pre_execution_errors
        self._record(stats, errors=errors or ())

    def _record(self, stats: requests.RequestStats, errors) -> None:
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # no document (a parse error) or no operation of that name
            kind = None
        viewer = context.context
        user, patient = getattr(viewer, "user", None), getattr(viewer, "patient", None)
        stats.record_result(
            name=context.operation_name,
            kind=kind,
            user_id=user.pk if user is not None else None,
            patient_id=patient.pk if patient is not None else None,
            codes=[str((error.extensions or {}).get("code", "VALIDATION_ERROR")) for error in errors],
        )
