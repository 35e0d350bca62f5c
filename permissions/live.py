"""Who may follow which live stream, and which logged events each follower may see.

Checked when a subscription starts and again for every batch of events it delivers, against the current
state: an unsubscribed user, a deactivated mailbox, a lost membership or a switched-off feature stop the
flow at the next event.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from core.errors import not_found
from core.models import AccessSource, Conversation, Event, EventKind, MailboxSubscription, Patient, User
from permissions import (
    DatabaseFacts,
    require_conversation_access,
    require_patient_conversation,
    require_portal,
    require_workbench_member,
)

# Changes to a practice's set of mailboxes: every member's mailbox list shows them.
MAILBOX_LIFECYCLE = (
    EventKind.MAILBOX_CREATED,
    EventKind.MAILBOX_RENAMED,
    EventKind.MAILBOX_DEACTIVATED,
    EventKind.MAILBOX_ACTIVATED,
    EventKind.MAILBOX_DELETED,
    EventKind.MAILBOX_AUTO_REPLY_CHANGED,
)
# Changes that concern one user's own view (whose ids the event lists).
PERSONAL = (EventKind.SUBSCRIPTIONS_CHANGED, EventKind.CONVERSATION_READ)
# Events after which a stream's access decision must be made again: a process keeps each viewer's decision in
# memory until one of these concerns it (`core.live.SharedLog`). Mailbox status changes concern everyone.
PRACTICE_WIDE_ACCESS = frozenset(
    {EventKind.MAILBOX_DEACTIVATED, EventKind.MAILBOX_ACTIVATED, EventKind.MAILBOX_DELETED}
)
ACCESS_CHANGES = frozenset({EventKind.ACCESS_CHANGED, EventKind.SUBSCRIPTIONS_CHANGED, *PRACTICE_WIDE_ACCESS})
# What a patient sees of their own threads in the portal. Never notes, assignment or priority (staff-only kinds,
# logged without the patient's id as well).
PORTAL_KINDS = (EventKind.MESSAGE_ADDED, EventKind.CONVERSATION_STARTED, EventKind.MESSAGE_RETRACTED)


def require_mailbox_stream(user: User | None, practice_id: int) -> None:
    """`mailboxEvents`: a member of the practice with the workbench on; another practice's user gets NOT_FOUND."""
    require_workbench_member(user, practice_id)


def subscribed_active_mailbox_ids(user: User, practice_id: int) -> set[int]:
    return set(
        MailboxSubscription.objects.filter(
            user=user, mailbox__practice_id=practice_id, mailbox__is_active=True
        ).values_list("mailbox_id", flat=True)
    )


def mailbox_stream_visible(event: Event, user: User, subscribed_active: set[int]) -> bool:
    """One event of the practice log, for a member whose subscribed active mailboxes are `subscribed_active`."""
    if event.kind in MAILBOX_LIFECYCLE:
        return True
    if event.kind == EventKind.SUBSCRIPTIONS_CHANGED:
        return user.pk in (event.user_ids or [])
    if event.kind == EventKind.ACCESS_CHANGED:  # a practice setting (everyone) or this user's role/permissions
        return not event.user_ids or user.pk in event.user_ids
    if event.kind == EventKind.CONVERSATION_READ:
        return user.pk in (event.user_ids or []) and event.mailbox_id in subscribed_active
    if event.kind == EventKind.QUICK_REPLIES_CHANGED:  # every staff member uses them
        return True
    return event.mailbox_id in subscribed_active


def stream_conversation(user: User | None, conversation_id: int) -> Conversation | None:
    """The conversation a stream follows, with its mailbox and whether the viewer is subscribed to that mailbox
    (`_viewer_subscribed`, read by `require_conversation_stream`), in one query (asked again at every event)."""
    subscribed = MailboxSubscription.objects.filter(
        user_id=getattr(user, "pk", None), mailbox_id=OuterRef("mailbox_id")
    )
    return (
        Conversation.objects.select_related("mailbox")
        .annotate(_viewer_subscribed=Exists(subscribed))
        .filter(pk=conversation_id)
        .first()
    )


def require_conversation_stream(user: User | None, conversation: Conversation | None, via: AccessSource) -> None:
    """`conversationEvents`: the same rule as opening the conversation from that place."""
    if conversation is None:
        raise not_found("conversation")
    # A workbench member first, then the place's rule, with the subscription read along with the conversation.
    facts = DatabaseFacts(subscribed=conversation._viewer_subscribed)
    require_conversation_access(user, conversation, via, facts=facts)


def conversation_stream_visible(event: Event, user: User) -> bool:
    if event.kind == EventKind.CONVERSATION_READ:
        return user.pk in (event.user_ids or [])
    return event.kind not in (
        EventKind.SUBSCRIPTIONS_CHANGED,
        EventKind.ACCESS_CHANGED,
        EventKind.QUICK_REPLIES_CHANGED,
    )


def require_portal_stream(patient: Patient) -> None:
    require_portal(patient.practice_id)


def portal_event_filter(patient: Patient) -> Q:
    """The patient's own threads: new conversations and messages in them, never staff-only signals."""
    return Q(patient_id=patient.pk, kind__in=PORTAL_KINDS)


def portal_event_matches(patient: Patient, event: Event) -> bool:
    """`portal_event_filter` for an event already read."""
    return event.patient_id == patient.pk and event.kind in PORTAL_KINDS


def require_portal_conversation(patient: Patient, conversation: Conversation) -> None:
    require_patient_conversation(patient, conversation)
