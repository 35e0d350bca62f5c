"""Reads for mailbox admins and practice administrators: access pages, settings, audit, Meaningful Use."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import QuerySet

from core.instants import require_instant
from core.models import AuditEvent, Mailbox, MailboxSubscription, Practice, PracticeSetting, User
from core.viewer_facts import annotate_mailboxes
from permissions import administered_memberships, audit_events_visible_to, require_member, require_practice_admin


@dataclass
class PracticeAccess:
    practice: Practice
    all_mailboxes: bool
    mailboxes: list[tuple[Mailbox, bool]]


def user_mailbox_access(*, acting_user: User, user_id: int) -> list[PracticeAccess]:
    """For each practice the user belongs to whose mailboxes the acting user administers
    (`permissions.administered_memberships`): its mailboxes and whether the user is subscribed to each."""
    memberships = administered_memberships(acting_user, user_id)
    practice_ids = [m.practice_id for m in memberships]
    subscribed = set(
        MailboxSubscription.objects.filter(user_id=user_id, mailbox__practice_id__in=practice_ids).values_list(
            "mailbox_id", flat=True
        )
    )
    mailboxes_by_practice: dict[int, list[Mailbox]] = {pid: [] for pid in practice_ids}
    mailboxes = annotate_mailboxes(Mailbox.objects.filter(practice_id__in=practice_ids), acting_user)
    for mailbox in mailboxes.order_by("name", "pk"):
        mailboxes_by_practice[mailbox.practice_id].append(mailbox)
    result = []
    for membership in memberships:
        boxes = mailboxes_by_practice[membership.practice_id]
        flags = [(m, m.pk in subscribed) for m in boxes]
        result.append(
            PracticeAccess(
                practice=membership.practice,
                all_mailboxes=any(m.is_active for m in boxes) and all(s for m, s in flags if m.is_active),
                mailboxes=flags,
            )
        )
    return result


def practice_settings(*, acting_user: User, practice_id: int) -> QuerySet[PracticeSetting]:
    require_practice_admin(acting_user, practice_id)
    return PracticeSetting.objects.filter(practice_id=practice_id).order_by("key")


def audit_events(
    *,
    acting_user: User,
    practice_id: int,
    user_id: int | None = None,
    patient_id: int | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> QuerySet[AuditEvent]:
    events = audit_events_visible_to(acting_user, practice_id).select_related("actor_user", "actor_patient", "patient")
    since, until = require_instant(since, "since"), require_instant(until, "until")
    if user_id is not None:
        events = events.filter(actor_user_id=user_id)
    if patient_id is not None:
        events = events.filter(patient_id=patient_id)
    if action is not None:
        events = events.filter(action=getattr(action, "value", action))
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events


def meaningful_use(*, acting_user: User, practice_id: int) -> list[User]:
    """Clinician members subscribed to at least one active mailbox of the practice."""
    require_member(acting_user, practice_id)
    return list(
        User.objects.filter(
            memberships__practice_id=practice_id,
            memberships__is_clinician=True,
            mailbox_subscriptions__mailbox__practice_id=practice_id,
            mailbox_subscriptions__mailbox__is_active=True,
        )
        .distinct()
        .order_by("full_name", "username")
    )
