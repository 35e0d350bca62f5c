"""Patients: the chart summary (their conversations across mailboxes) and the portal's notice choice."""

from __future__ import annotations

import datetime as dt

import strawberry
import strawberry_django
from strawberry import relay

from core import models
from core.reads import chart_conversations_of
from graph import guards
from graph.batching import batch_of, passes, with_siblings
from graph.context import Info
from graph.conversations.types import ConversationType


@strawberry_django.type(models.Patient, name="Patient")
class PatientType(relay.Node):
    pk: relay.NodeID[int]
    first_name: str
    last_name: str
    preferred_pronoun: str
    date_of_birth: dt.date
    account_number: str

    @strawberry.field
    def full_name(self: models.Patient) -> str:
        return self.full_name

    @strawberry.field(
        description="The chart summary: every conversation with this patient, across all mailboxes, most recent "
        "first. Any staff member of the practice (workbench on); opens with via CHART_SUMMARY."
    )
    def conversations(self: models.Patient, info: Info) -> list[ConversationType] | None:
        context = info.context
        guards.workbench_staff_of(context, self.practice_id)
        batch = batch_of(context, self)

        def load() -> dict[int, list[models.Conversation]]:
            patients = [p for p in batch.rows if passes(lambda p: guards.workbench_staff_of(context, p.practice_id), p)]
            by_patient = chart_conversations_of(user=context.require_user(), patients=patients)
            rows = [c for conversations in by_patient.values() for c in conversations]
            context.paths.reached(rows, models.AccessSource.CHART_SUMMARY)
            with_siblings(context, rows)
            return by_patient

        return context.memo(("chart-conversations", batch), load).get(self.pk, [])


@strawberry.type(description="The patient's choice of new-message notices (the email never carries the message).")
class PortalNotifications:
    email: bool = strawberry.field(description="Notices by email are on.")
    email_on_file: bool = strawberry.field(description="The practice has an email address for the patient.")

    @classmethod
    def of(cls, patient: models.Patient) -> PortalNotifications:
        return cls(email=patient.email_notices, email_on_file=bool(patient.email))
