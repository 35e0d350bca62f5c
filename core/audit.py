"""Writing the append-only audit trail. A failed audit write fails the operation (it is in its transaction)."""

from __future__ import annotations

from django.db import models

from core.context import current_request
from core.models import AccessSource, AuditAction, AuditEvent, Patient, Practice, User


def record(
    *,
    operation: str,
    action: AuditAction,
    practice: Practice | int | None,
    actor_user: User | None = None,
    actor_patient: Patient | None = None,
    target: models.Model | None = None,
    patient: Patient | int | None = None,
    via: AccessSource | str = "",
    outcome: str = "SUCCESS",
    query: str = "",
    detail: dict | None = None,
) -> AuditEvent:
    info = current_request()
    return AuditEvent.objects.create(
        practice_id=practice if isinstance(practice, int) or practice is None else practice.pk,
        actor_user=actor_user,
        actor_patient=actor_patient,
        action=action,
        operation=operation,
        object_type=type(target).__name__ if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        patient_id=patient if isinstance(patient, int) or patient is None else patient.pk,
        query=query[:200],
        via=str(via),
        ip=info.ip,
        outcome=outcome,
        request_id=info.request_id,
        detail=detail or {},
    )
