"""GraphQL types of SPEC §3. Fields read attributes prepared by `core.reads`; guards call `permissions/`."""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from typing import Annotated, Any

import strawberry
import strawberry_django
from django.db.models import Count, Q
from django.utils.dateparse import parse_datetime
from strawberry import relay

from core import models
from core.errors import DomainError, ErrorCode
from core.reads import (
    annotate_conversations,
    annotate_mailboxes,
    audit_mailbox_conversation_reads,
    audit_messages_in_answer,
    chart_conversations_of,
    messages_with_details,
)
from core.stats import MailboxStats, stats_of
from graph import guards
from graph.context import Context
from graph.ids import decode_id
from graph.pagination import Connection, Ordering, PageArgs, cursor_int, invalid_cursor, paginate, paginate_siblings
from graph.selection import child_names, selected_anywhere
from permissions import practice_ids_of

Info = strawberry.Info[Context, None]


@strawberry.enum
class MailboxStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    DEACTIVATED = "DEACTIVATED"


ConversationStatus = strawberry.enum(models.ConversationStatus, name="ConversationStatus")
MessageDirection = strawberry.enum(models.MessageDirection, name="MessageDirection")
PracticePermission = strawberry.enum(models.PracticePermission, name="PracticePermission")
Role = strawberry.enum(models.Role, name="Role")
AuditAction = strawberry.enum(models.AuditAction, name="AuditAction")
EventKind = strawberry.enum(models.EventKind, name="EventKind")
ConversationPriority = strawberry.enum(models.ConversationPriority, name="ConversationPriority")


@strawberry.enum(description="How a mailbox's conversation list is ordered.")
class ConversationOrder(enum.Enum):
    RECENT_ACTIVITY = "RECENT_ACTIVITY"
    URGENT_FIRST = "URGENT_FIRST"
    LONGEST_WAITING = "LONGEST_WAITING"


@strawberry.enum
class AccessSource(enum.Enum):
    MAILBOX = "MAILBOX"
    CHART_SUMMARY = "CHART_SUMMARY"


class Batch:
    """The rows of one list: a nested field loads its data for all of them in one query (hashed by identity)."""

    __slots__ = ("rows",)

    def __init__(self, rows: list) -> None:
        self.rows = rows


def with_siblings(rows: list) -> list:
    """Lets a nested field batch its query over every row of the list its parent came in."""
    batch = Batch(rows)
    for row in rows:
        row._batch = batch
    return rows


def batch_of(row: Any) -> Batch:
    batch = getattr(row, "_batch", None)
    if batch is None:
        batch = Batch([row])
        row._batch = batch
    return batch


def _allowed(check, row) -> bool:
    try:
        check(row)
    except DomainError:
        return False
    return True


MESSAGE_ORDER = Ordering(
    fields=("sequence",), descending=False, to_json=lambda m: [m.sequence], from_json=lambda v: [cursor_int(v[0])]
)


def _parse_time(value: Any) -> dt.datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise invalid_cursor()
    return parsed


CONVERSATION_ORDER = Ordering(
    fields=("last_activity_at", "id"),
    descending=True,
    to_json=lambda c: [c.last_activity_at.isoformat(), c.pk],
    from_json=lambda v: [_parse_time(v[0]), cursor_int(v[1])],
)


def _priority(value: Any) -> str:
    if value not in models.ConversationPriority.values:
        raise invalid_cursor()
    return value


# "URGENT" > "NORMAL" as text: descending puts urgent conversations first, then most recent activity.
URGENT_FIRST_ORDER = Ordering(
    fields=("priority", "last_activity_at", "id"),
    descending=True,
    to_json=lambda c: [c.priority, c.last_activity_at.isoformat(), c.pk],
    from_json=lambda v: [_priority(v[0]), _parse_time(v[1]), cursor_int(v[2])],
)
# Waiting conversations only (the order implies `waitingOnly`), the patient who has waited longest first.
LONGEST_WAITING_ORDER = Ordering(
    fields=("waiting_since", "id"),
    descending=False,
    to_json=lambda c: [c.waiting_since.isoformat(), c.pk],
    from_json=lambda v: [_parse_time(v[0]), cursor_int(v[1])],
)
CONVERSATION_ORDERS = {
    ConversationOrder.RECENT_ACTIVITY: CONVERSATION_ORDER,
    ConversationOrder.URGENT_FIRST: URGENT_FIRST_ORDER,
    ConversationOrder.LONGEST_WAITING: LONGEST_WAITING_ORDER,
}
# The patient's numbering of their messages (notes have none): the portal's `sequence`, gap-free.
PORTAL_MESSAGE_ORDER = Ordering(
    fields=("portal_sequence",),
    descending=False,
    to_json=lambda m: [m.portal_sequence],
    from_json=lambda v: [cursor_int(v[0])],
)


# ---- practice and people --------------------------------------------------------------------------


@strawberry_django.type(models.Practice, name="Practice")
class PracticeType(relay.Node):
    name: str
    key: str


@strawberry_django.type(models.User, name="User")
class UserType(relay.Node):
    username: str

    @strawberry.field
    def full_name(self: models.User) -> str:
        return self.display_name()

    @strawberry.field(description="The user's memberships in practices the viewer shares with them.")
    def memberships(self: models.User, info: Info) -> list[MembershipType]:
        viewer = info.context.require_user()
        batch = batch_of(self)

        def load() -> dict[int, list[models.Membership]]:
            rows = (
                models.Membership.objects.filter(
                    user_id__in={u.pk for u in batch.rows}, practice_id__in=practice_ids_of(viewer)
                )
                .select_related("practice")
                .prefetch_related("grants")
                .order_by("practice__name", "pk")
            )
            by_user: dict[int, list[models.Membership]] = defaultdict(list)
            for membership in rows:
                by_user[membership.user_id].append(membership)
            return by_user

        return info.context.memo(("memberships", batch), load).get(self.pk, [])


@strawberry_django.type(models.Membership, name="Membership")
class MembershipType:
    practice: PracticeType
    user: UserType
    role: Role
    is_clinician: bool

    @strawberry.field
    def permissions(self: models.Membership) -> list[PracticePermission]:
        return sorted((grant.permission for grant in self.grants.all()), key=str)


@strawberry.type(name="PracticeSetting")
class PracticeSettingType:
    key: str
    value: str


# ---- mailboxes -------------------------------------------------------------------------------------


# The Mailbox fields answered from `core.reads.annotate_mailboxes`'s facts, by the fact each reads.
MAILBOX_FACT_FIELDS = {
    "isSubscribed": "is_subscribed",
    "subscriberCount": "subscriber_count",
    "unreadCount": "unread_count",
}


def selected_mailbox_facts(info: Info) -> frozenset[str]:
    """The facts a read of mailboxes must annotate for the fields selected on them."""
    return frozenset(MAILBOX_FACT_FIELDS[name] for name in child_names(info) & MAILBOX_FACT_FIELDS.keys())


def _mailbox_facts(mailbox: models.Mailbox, info: Info, fact: str) -> models.Mailbox:
    """The mailbox with the viewer's annotations (subscription, counts): as read if it carries `fact`, else all
    of them loaded for its whole list at once."""
    if hasattr(mailbox, fact):
        return mailbox
    batch = batch_of(mailbox)

    def load() -> dict[int, models.Mailbox]:
        ids = {m.pk for m in batch.rows}
        return {m.pk: m for m in annotate_mailboxes(models.Mailbox.objects.filter(pk__in=ids), info.context.user)}

    return info.context.memo(("mailbox-facts", batch), load)[mailbox.pk]


@strawberry_django.type(models.Mailbox, name="Mailbox")
class MailboxType(relay.Node):
    name: str

    @strawberry.field
    def status(self: models.Mailbox) -> MailboxStatus:
        return MailboxStatus.ACTIVE if self.is_active else MailboxStatus.DEACTIVATED

    @strawberry.field
    def practice(self: models.Mailbox, info: Info) -> PracticeType:
        return info.context.memo(
            ("practice", self.practice_id), lambda: models.Practice.objects.get(pk=self.practice_id)
        )

    @strawberry.field(description="Whether the viewer is subscribed (false for patients).")
    def is_subscribed(self: models.Mailbox, info: Info) -> bool:
        return bool(getattr(_mailbox_facts(self, info, "is_subscribed"), "is_subscribed", False))

    @strawberry.field(description="Staff of the practice only (null with an error for others).")
    def subscriber_count(self: models.Mailbox, info: Info) -> int | None:
        guards.workbench_staff_of(info.context, self.practice_id)
        return int(getattr(_mailbox_facts(self, info, "subscriber_count"), "subscriber_count", 0))

    @strawberry.field(
        description="The text a patient gets back when their message opens a conversation here or reactivates an "
        "archived one (null: none). Staff of the practice only (null with an error for others)."
    )
    def auto_reply(self: models.Mailbox, info: Info) -> str | None:
        guards.workbench_staff_of(info.context, self.practice_id)
        return self.auto_reply

    @strawberry.field(description="Messages from patients in this mailbox that the viewer has not read.")
    def unread_count(self: models.Mailbox, info: Info) -> int:
        return int(getattr(_mailbox_facts(self, info, "unread_count"), "unread_count", 0))

    @strawberry.field(description="Staff of the practice only (null with an error for others).")
    def subscribers(self: models.Mailbox, info: Info) -> list[UserType] | None:
        guards.workbench_staff_of(info.context, self.practice_id)
        batch = batch_of(self)

        def load() -> dict[int, list[models.User]]:
            allowed = [
                m.pk
                for m in batch.rows
                if _allowed(lambda m: guards.workbench_staff_of(info.context, m.practice_id), m)
            ]
            by_mailbox: dict[int, list[models.User]] = defaultdict(list)
            rows = models.MailboxSubscription.objects.filter(mailbox_id__in=allowed).select_related("user")
            for sub in rows.order_by("user__full_name", "user__username", "user_id"):
                by_mailbox[sub.mailbox_id].append(sub.user)
            with_siblings([user for users in by_mailbox.values() for user in users])  # one batch for memberships
            return by_mailbox

        return info.context.memo(("subscribers", batch), load).get(self.pk, [])

    @strawberry.field(
        description="Conversations of this mailbox, most recent activity first (or `order`). "
        "Subscribers of an active mailbox only (else NOT_SUBSCRIBED / MAILBOX_DEACTIVATED). Filters: "
        "`assigneeId` (assigned to that user), `unassigned`, `priority`, `waitingOnly` (a patient awaits an answer)."
    )
    def conversations(
        self: models.Mailbox,
        info: Info,
        status: ConversationStatus | None = models.ConversationStatus.ACTIVE,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        assignee_id: strawberry.ID | None = None,
        unassigned: bool | None = None,
        priority: ConversationPriority | None = None,
        waiting_only: bool | None = None,
        order: ConversationOrder = ConversationOrder.RECENT_ACTIVITY,
    ) -> Connection[ConversationType] | None:
        context = info.context
        guards.mailbox_view(context, self)
        user = context.require_user()
        args = PageArgs(first=first, after=after, last=last, before=before)
        # `status: null` lists active and archived conversations together.
        where = conversation_filter(
            status=status,
            assignee_id=assignee_id,
            unassigned=unassigned,
            priority=priority,
            waiting_only=waiting_only or order == ConversationOrder.LONGEST_WAITING,
        )
        ordering = CONVERSATION_ORDERS[order]
        base = annotate_conversations(models.Conversation.objects.filter(where), user)
        batch = batch_of(self)

        def load() -> dict[int, Connection]:
            parents = {m.pk: m for m in batch.rows if _allowed(lambda m: guards.mailbox_view(context, m), m)}
            if args.is_first_page:
                ids = list(parents)
                connections = paginate_siblings(
                    base,
                    args,
                    ordering,
                    parent_field="mailbox_id",
                    parent_ids=ids,
                    counts=lambda: dict(
                        models.Conversation.objects.filter(where, mailbox_id__in=ids)
                        .order_by()
                        .values_list("mailbox_id")
                        .annotate(n=Count("*"))
                        .values_list("mailbox_id", "n")
                    ),
                )
            else:  # a cursor belongs to one mailbox's list
                connections = {self.pk: paginate(base.filter(mailbox=self), args, ordering)}
            nodes = []
            for pk, connection in connections.items():
                for edge in connection.edges:
                    edge.node.mailbox = parents[pk]  # already carries the viewer's annotations
                    nodes.append(edge.node)
            with_siblings(nodes)
            audit_mailbox_conversation_reads(
                user=user, rows={parents[pk]: [e.node for e in c.edges] for pk, c in connections.items()}
            )
            return connections

        filters = (status, assignee_id, unassigned, priority, waiting_only, order)
        key = ("mailbox-conversations", batch if args.is_first_page else self.pk, filters, args)
        return context.memo(key, load)[self.pk]

    @strawberry.field(
        description="How the mailbox's team is doing: open and waiting conversations now, the oldest wait, and the "
        "median first response and response times of staff answers since `since` (all time when null). "
        "Subscribers and mailbox admins (else NOT_SUBSCRIBED)."
    )
    def stats(self: models.Mailbox, info: Info, since: dt.datetime | None = None) -> MailboxStatsType | None:
        context = info.context
        guards.pool_view(context, self)
        batch = batch_of(self)

        def load() -> dict[int, MailboxStats]:
            allowed = [m.pk for m in batch.rows if _allowed(lambda m: guards.pool_view(context, m), m)]
            return stats_of(allowed, since=since)

        stats = context.memo(("mailbox-stats", batch, since), load)[self.pk]
        return MailboxStatsType(
            open_count=stats.open_count,
            waiting_count=stats.waiting_count,
            oldest_waiting_since=stats.oldest_waiting_since,
            median_first_response_seconds=stats.median_first_response_seconds,
            median_response_seconds=stats.median_response_seconds,
        )


@strawberry.type(name="MailboxStats")
class MailboxStatsType:
    open_count: int
    waiting_count: int
    oldest_waiting_since: dt.datetime | None
    median_first_response_seconds: float | None
    median_response_seconds: float | None


def conversation_filter(
    *,
    status: Any,
    assignee_id: strawberry.ID | None,
    unassigned: bool | None,
    priority: Any,
    waiting_only: bool | None,
) -> Q:
    if assignee_id is not None and unassigned:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Pass assigneeId or unassigned: true, not both.")
    where = Q()
    if status is not None:
        where &= Q(status=status)
    if assignee_id is not None:
        where &= Q(assignee_id=decode_id(assignee_id, "User"))
    elif unassigned is not None:
        where &= Q(assignee__isnull=unassigned)
    if priority is not None:
        where &= Q(priority=priority)
    if waiting_only:
        where &= Q(waiting_since__isnull=False)
    return where


# ---- conversations and messages --------------------------------------------------------------------


@strawberry_django.type(models.Conversation, name="Conversation")
class ConversationType(relay.Node):
    status: ConversationStatus
    last_message_at: dt.datetime | None
    created_at: dt.datetime

    @strawberry.field
    def mailbox(self: models.Conversation, info: Info) -> Annotated[MailboxType, strawberry.lazy("graph.types")]:
        if hasattr(self.mailbox, "subscriber_count") or hasattr(self.mailbox, "_batch"):
            # Loaded with the viewer's facts, or batched with its list by the read (the facts load for all at once).
            return self.mailbox
        batch = batch_of(self)

        def load() -> dict[int, models.Mailbox]:
            ids = {c.mailbox_id for c in batch.rows}
            rows = annotate_mailboxes(models.Mailbox.objects.filter(pk__in=ids), info.context.user)
            return {m.pk: m for m in with_siblings(list(rows))}

        return info.context.memo(("conversation-mailboxes", batch), load)[self.mailbox_id]

    @strawberry.field
    def patient(self: models.Conversation, info: Info) -> Annotated[PatientType, strawberry.lazy("graph.types")]:
        batch = batch_of(self)
        # The patients of one list of conversations form one list too (for their chart `conversations`).
        info.context.memo(("conversation-patients", batch), lambda: with_siblings([c.patient for c in batch.rows]))
        return self.patient

    @strawberry.field(description="Messages from the patient the viewer has not read (0 for patients).")
    def unread_count(self: models.Conversation) -> int:
        return int(getattr(self, "unread_count", 0))

    @strawberry.field(description="Who works this conversation (null: unassigned). Staff only (null for patients).")
    def assignee(self: models.Conversation, info: Info) -> UserType | None:
        if info.context.patient is not None or self.assignee is None:
            return None
        batch = batch_of(self)
        # The assignees of one list form one list too (their `memberships` load in one query).
        info.context.memo(
            ("conversation-assignees", batch),
            lambda: with_siblings([c.assignee for c in batch.rows if c.assignee_id is not None]),
        )
        return self.assignee

    @strawberry.field(description="NORMAL or URGENT. Staff only (null for patients).")
    def priority(self: models.Conversation, info: Info) -> ConversationPriority | None:
        if info.context.patient is not None:
            return None
        return models.ConversationPriority(self.priority)

    @strawberry.field(
        description="When the oldest patient message not yet followed by a staff answer was sent (null: answered). "
        "Staff only (null for patients)."
    )
    def waiting_since(self: models.Conversation, info: Info) -> dt.datetime | None:
        if info.context.patient is not None:
            return None
        return self.waiting_since

    @strawberry.field(
        description="Claims, assignments and unassignments, oldest first. Staff only (empty for patients)."
    )
    def assignment_history(self: models.Conversation, info: Info) -> list[AssignmentChangeType]:
        context = info.context
        if context.patient is not None:
            return []
        batch = batch_of(self)

        def load() -> dict[int, list[models.AssignmentChange]]:
            rows = models.AssignmentChange.objects.filter(conversation_id__in={c.pk for c in batch.rows})
            by_conversation: dict[int, list[models.AssignmentChange]] = defaultdict(list)
            users = []
            for change in rows.select_related("assignee", "previous_assignee", "changed_by").order_by("at", "id"):
                by_conversation[change.conversation_id].append(change)
                users += [u for u in (change.assignee, change.previous_assignee, change.changed_by) if u is not None]
            with_siblings(users)
            return by_conversation

        return context.memo(("assignment-history", batch), load).get(self.pk, [])

    @strawberry.field(description="Oldest first by sequence: `last: 50` is the newest fifty, `before` pages back.")
    def messages(
        self: models.Conversation,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[MessageType] | None:
        context = info.context
        guards.conversation_read(context, self)
        answer_of = getattr(self, "_answer_of", None)
        if answer_of and context.user is not None:
            context.memo(
                ("messages-in-answer", self.pk),
                lambda: audit_messages_in_answer(
                    user=context.user, conversation=self, via=getattr(self, "_via", None) or "", operation=answer_of
                ),
            )
        args = PageArgs(first=first, after=after, last=last, before=before)
        batch = batch_of(self)
        patient = context.patient is not None
        via = None if patient else getattr(self, "_via", models.AccessSource.MAILBOX)
        # A patient's thread is their numbering of the messages they can see: notes are not in it at all.
        ordering, last_of = (PORTAL_MESSAGE_ORDER, _portal_last) if patient else (MESSAGE_ORDER, _staff_last)

        def load() -> dict[int, Connection]:
            base = messages_with_details(models.Message.objects.all(), attachments=False)
            if patient:
                base = base.filter(portal_sequence__isnull=False)
            # Sequences have no gaps, so a thread's count is its last sequence: no COUNT(*) over long threads.
            if args.is_first_page:
                parents = {c.pk: c for c in batch.rows if _allowed(lambda c: guards.conversation_read(context, c), c)}
                connections = paginate_siblings(
                    base.filter(_newest_or_oldest(parents.values(), args, ordering.fields[0], last_of)),
                    args,
                    ordering,
                    parent_field="conversation_id",
                    parent_ids=list(parents),
                    counts=lambda: {pk: last_of(c) for pk, c in parents.items()},
                )
            else:  # a cursor belongs to one conversation's list
                connections = {
                    self.pk: paginate(base.filter(conversation=self), args, ordering, count=lambda: last_of(self))
                }
            nodes = [edge.node for connection in connections.values() for edge in connection.edges]
            for node in nodes:
                node._via = via
                if patient:
                    node.sequence = node.portal_sequence
            if selected_anywhere(info, "attachments"):
                attach_attachments(nodes)
            return connections

        key = ("conversation-messages", batch if args.is_first_page else self.pk, args)
        return context.memo(key, load)[self.pk]


def attach_attachments(messages: list[models.Message]) -> None:
    """The attachments of a page of messages in one query, kept on each message as a plain list: Django's
    `prefetch_related` builds a filtered queryset per message to hold its cache (250 per large page, ~5% of its
    CPU), and the field only reads the rows."""
    by_message: dict[int, list[models.Attachment]] = {m.pk: [] for m in messages}
    for attachment in models.Attachment.objects.filter(message_id__in=list(by_message)):  # Meta.ordering: id
        by_message[attachment.message_id].append(attachment)
    for message in messages:
        message._attachment_rows = by_message[message.pk]


def _staff_last(conversation: models.Conversation) -> int:
    return conversation.last_sequence


def _portal_last(conversation: models.Conversation) -> int:
    return conversation.portal_last_sequence


def _newest_or_oldest(conversations, args: PageArgs, field: str = "sequence", last_of=_staff_last) -> Q:
    """Sequences have no gaps, so the first page of each thread is a sequence range an index scan serves:
    the newest n are above last_sequence - n, the oldest n at most n (+1 to learn if there is more)."""
    size = args.size()
    condition = Q(pk__in=[])
    for conversation in conversations:
        newest = Q(**{f"{field}__gt": last_of(conversation) - size - 1})
        window = newest if args.backwards else Q(**{f"{field}__lte": size + 1})
        condition |= Q(conversation_id=conversation.pk) & window
    return condition


@strawberry_django.type(models.Attachment, name="Attachment")
class AttachmentType(relay.Node):
    filename: str
    content_type: str
    size: int
    sha256: str

    @strawberry.field(description="Authenticated download URL (same access rules as the message).")
    def url(self: models.Attachment, info: Info) -> str:
        path = self.download_path_for(getattr(self, "_via", None))
        request = info.context.request
        return request.build_absolute_uri(path) if request is not None else path


@strawberry.type(description="A message withdrawn by the practice (entered in error). Patients see only `at`.")
class MessageRetraction:
    at: dt.datetime
    by: UserType | None = strawberry.field(description="Who withdrew it (null for patients).")
    reason: str | None = strawberry.field(description="Why (null for patients).")


def _withdrawn_for_patient(message: models.Message, info: Info) -> bool:
    return message.retracted_at is not None and info.context.patient is not None


@strawberry_django.type(models.Message, name="Message")
class MessageType(relay.Node):
    sequence: int
    direction: MessageDirection
    sent_at: dt.datetime
    client_message_id: str | None
    is_automatic: bool = strawberry_django.field(
        description="The mailbox's auto-reply: sent by no one, signed with the mailbox's name."
    )

    @strawberry.field(description="Empty for a patient once the practice withdrew the message.")
    def body(self: models.Message, info: Info) -> str:
        return "" if _withdrawn_for_patient(self, info) else self.body

    @strawberry.field(description="Set when the practice withdrew the message; staff still see it whole.")
    def retracted(self: models.Message, info: Info) -> MessageRetraction | None:
        if self.retracted_at is None:
            return None
        if info.context.patient is not None:
            return MessageRetraction(at=self.retracted_at, by=None, reason=None)
        return MessageRetraction(at=self.retracted_at, by=self.retracted_by, reason=self.retract_reason)

    @strawberry.field
    def sender_name(self: models.Message) -> str:
        return self.sender_name

    @strawberry.field(description="Empty for a patient once the practice withdrew the message.")
    def attachments(self: models.Message, info: Info) -> list[AttachmentType]:
        if _withdrawn_for_patient(self, info):
            return []
        rows = getattr(self, "_attachment_rows", None)
        if rows is None:
            rows = list(self.attachments.all())
        for attachment in rows:
            attachment._via = getattr(self, "_via", None)
        return rows

    @strawberry.field
    def conversation_id(self: models.Message) -> relay.GlobalID:
        return relay.GlobalID("Conversation", str(self.conversation_id))


@strawberry_django.type(models.AssignmentChange, name="AssignmentChange")
class AssignmentChangeType:
    reason: str
    at: dt.datetime

    @strawberry.field(description="Null: the change unassigned the conversation.")
    def assignee(self: models.AssignmentChange) -> UserType | None:
        return self.assignee

    @strawberry.field
    def previous_assignee(self: models.AssignmentChange) -> UserType | None:
        return self.previous_assignee

    @strawberry.field
    def changed_by(self: models.AssignmentChange) -> UserType:
        return self.changed_by


@strawberry_django.type(models.QuickReply, name="QuickReply")
class QuickReplyType(relay.Node):
    title: str
    body: str


# ---- patients --------------------------------------------------------------------------------------


@strawberry_django.type(models.Patient, name="Patient")
class PatientType(relay.Node):
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
        batch = batch_of(self)

        def load() -> dict[int, list[models.Conversation]]:
            patients = [
                p for p in batch.rows if _allowed(lambda p: guards.workbench_staff_of(context, p.practice_id), p)
            ]
            by_patient = chart_conversations_of(user=context.require_user(), patients=patients)
            rows = [c for conversations in by_patient.values() for c in conversations]
            for row in rows:
                row._via = models.AccessSource.CHART_SUMMARY
            with_siblings(rows)
            return by_patient

        return context.memo(("chart-conversations", batch), load).get(self.pk, [])


@strawberry.type(description="The patient's choice of new-message notices (the email never carries the message).")
class PortalNotifications:
    email: bool = strawberry.field(description="Notices by email are on.")
    email_on_file: bool = strawberry.field(description="The practice has an email address for the patient.")

    @classmethod
    def of(cls, patient: models.Patient) -> PortalNotifications:
        return cls(email=patient.email_notices, email_on_file=bool(patient.email))


# ---- admin views -----------------------------------------------------------------------------------


@strawberry.type
class MailboxAccessEntry:
    mailbox: MailboxType
    subscribed: bool


@strawberry.type
class PracticeMailboxAccess:
    practice: PracticeType
    all_mailboxes: bool
    mailboxes: list[MailboxAccessEntry]


@strawberry.type
class ClinicianRef:
    id: relay.GlobalID
    full_name: str


@strawberry.type
class MeaningfulUse:
    counts_as_patient_messaging: bool
    clinicians: list[ClinicianRef]


@strawberry_django.type(models.AuditEvent, name="AuditEvent")
class AuditEventType(relay.Node):
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
        return self.actor_user if getattr(self, "actor_is_member", False) else None

    @strawberry.field
    def actor_patient(self: models.AuditEvent) -> PatientType | None:
        patient = self.actor_patient
        return patient if patient is not None and patient.practice_id == self.practice_id else None

    @strawberry.field
    def patient(self: models.AuditEvent) -> PatientType | None:
        return self.patient

    @strawberry.field
    def practice_id(self: models.AuditEvent) -> relay.GlobalID | None:
        return relay.GlobalID("Practice", str(self.practice_id)) if self.practice_id else None


AUDIT_ORDER = Ordering(
    fields=("id",), descending=True, to_json=lambda a: [a.pk], from_json=lambda v: [cursor_int(v[0])]
)
