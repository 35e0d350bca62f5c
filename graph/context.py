"""The typed GraphQL context: who is asking (staff user or patient), a per-request memo, and how each row of the
answer was reached (`graph.paths`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry
from django.http import HttpRequest

from core.errors import DomainError
from core.models import Patient, User
from graph.paths import Paths
from permissions import require_patient_caller, require_staff_caller


@dataclass
class Context:
    request: HttpRequest | None
    response: Any = None
    user: User | None = None
    patient: Patient | None = None
    token_id: int | None = None
    auth_error: DomainError | None = None
    cache: dict = field(default_factory=dict)
    # How each row of the answer was reached (`graph.paths`); kept by `fresh`: a path does not change with data.
    paths: Paths = field(default_factory=Paths)

    def require_user(self) -> User:
        return require_staff_caller(self.user, self.patient, self.auth_error)

    def require_patient(self) -> Patient:
        return require_patient_caller(self.user, self.patient, self.auth_error)

    def release(self) -> None:
        """Lets go of the rows the request loaded, once its answer is built. The executor and Django's request
        are reference cycles, which the collector frees only when it runs: every row reachable from them (a
        search page's 20 messages with their conversations, mailboxes, patients and paths: ~480 of a request's
        ~520 cyclic objects) waited for it, so a young collection came every ~20 such requests, 3.7 ms each
        (measured in one process). Released here, they go when the request does."""
        self.paths = Paths()
        self.cache = {}

    def memo(self, key: Any, compute):
        """Per-request memo, e.g. one access decision per mailbox however many rows ask."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


Info = strawberry.Info[Context, None]


def fresh(info: Info) -> None:
    """A change invalidates the request's memoized access decisions (several mutations can share a request)."""
    info.context.cache.clear()
