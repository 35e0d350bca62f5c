"""Root fields of patients: search, one patient's chart, the portal's notice choice."""

from __future__ import annotations

import strawberry

from core import actions, reads
from graph.context import Info
from graph.ids import decode_id
from graph.patients.types import PatientType, PortalNotifications


@strawberry.field(description="Patients by name tokens (any order, prefixes), date of birth or account number.")
def search_patients(info: Info, practice_id: strawberry.ID, query: str, first: int | None = 20) -> list[PatientType]:
    return reads.search_patients(
        user=info.context.require_user(),
        practice_id=decode_id(practice_id, "Practice"),
        query=query,
        limit=20 if first is None else first,
    )


@strawberry.field(description="A patient; `conversations` is the chart-summary view across all mailboxes.")
def patient(info: Info, id: strawberry.ID) -> PatientType | None:
    return reads.get_patient(user=info.context.require_user(), patient_id=decode_id(id, "Patient"))


@strawberry.field(description="Portal: whether the patient gets new-message notices by email.")
def portal_notifications(info: Info) -> PortalNotifications:
    return PortalNotifications.of(info.context.require_patient())


@strawberry.mutation(description="Portal: turns new-message notices by email on or off.")
def set_portal_notifications(info: Info, email: bool) -> PortalNotifications:
    patient = actions.set_portal_notifications(acting_patient=info.context.require_patient(), email=email)
    return PortalNotifications.of(patient)
