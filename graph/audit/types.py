"""The audit trail as the practice's owners and administrators read it."""

from __future__ import annotations

import datetime as dt

import strawberry
import strawberry_django
from strawberry import relay

from core import models
from graph.enums import AuditAction
from graph.pagination import Ordering, cursor_int
from graph.patients.types import PatientType
from graph.practice.types import UserType
from permissions import visible_actor_patient, visible_actor_user


@strawberry_django.type(models.AuditEvent, name="AuditEvent")
class AuditEventType(relay.Node):
    pk: relay.NodeID[int]
    created_at: dt.datetime
    action: AuditAction
    operation: str
    object_type: str
    object_id: str
    query: str
    via: str
    ip: str | None
    outcome: str
    request_id: str

    @strawberry.field
    def actor_user(self: models.AuditEvent) -> UserType | None:
        """Null when the actor belongs to another practice (a refused cross-practice probe)."""
        return visible_actor_user(self)

    @strawberry.field
    def actor_patient(self: models.AuditEvent) -> PatientType | None:
        return visible_actor_patient(self)

    @strawberry.field
    def patient(self: models.AuditEvent) -> PatientType | None:
        return self.patient

    @strawberry.field
    def practice_id(self: models.AuditEvent) -> relay.GlobalID | None:
        return relay.GlobalID("Practice", str(self.practice_id)) if self.practice_id else None


AUDIT_ORDER = Ordering(
    fields=("id",), descending=True, to_json=lambda a: [a.pk], from_json=lambda v: [cursor_int(v[0])]
)
