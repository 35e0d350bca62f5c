"""Root fields of the audit trail."""

from __future__ import annotations

import datetime as dt

import strawberry

from core import admin_reads
from graph.audit.types import AUDIT_ORDER, AuditEventType
from graph.context import Info
from graph.enums import AuditAction
from graph.ids import decode_id
from graph.pagination import Connection, PageArgs, paginate


@strawberry.field(description="The audit trail, newest first (owners and administrators).")
def audit_events(
    info: Info,
    practice_id: strawberry.ID,
    first: int | None = None,
    after: str | None = None,
    user_id: strawberry.ID | None = None,
    patient_id: strawberry.ID | None = None,
    action: AuditAction | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Connection[AuditEventType]:
    rows = admin_reads.audit_events(
        acting_user=info.context.require_user(),
        practice_id=decode_id(practice_id, "Practice"),
        user_id=decode_id(user_id, "User") if user_id else None,
        patient_id=decode_id(patient_id, "Patient") if patient_id else None,
        action=action,
        since=since,
        until=until,
    )
    return paginate(rows, PageArgs(first=first, after=after), AUDIT_ORDER)
