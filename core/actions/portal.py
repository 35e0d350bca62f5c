"""The patient's own portal settings."""

from __future__ import annotations

from django.db import transaction

from core import audit
from core.models import AccessSource, AuditAction, Patient


def set_portal_notifications(*, acting_patient: Patient, email: bool) -> Patient:
    """Turns new-message notices by email on or off for this patient. Always open to the patient, whatever the
    practice's switches: declining mail must never depend on a setting."""
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=acting_patient.pk)
        if patient.email_notices != email:
            patient.email_notices = email
            patient.save(update_fields=["email_notices"])
        audit.record(
            operation="setPortalNotifications",
            action=AuditAction.UPDATE,
            practice=patient.practice_id,
            actor_patient=patient,
            target=patient,
            patient=patient,
            via=AccessSource.PORTAL,
            detail={"email": email},
        )
    return patient
