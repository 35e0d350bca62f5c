"""GraphQL types of SPEC §3. Fields read attributes prepared by `core.reads`; guards call `permissions/`."""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from typing import Annotated

import strawberry
import strawberry_django
from django.db.models import Count
from django.utils.dateparse import parse_datetime
from strawberry import relay

from core import models
from core.errors import DomainError, ErrorCode
from core.reads import annotate_conversations, mailbox_conversations_audit, messages_with_details
from graph.context import Context
from graph.pagination import Connection, Ordering, PageArgs, paginate, paginate_siblings
from permissions import require_conversation_access, require_mailbox_view, require_patient_conversation

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


@strawberry.enum
class AccessSource(enum.Enum):
    MAILBOX = "MAILBOX"
    CHART_SUMMARY = "CHART_SUMMARY"


def with_siblings(rows: list) -> list:
    """Lets a nested field batch its query over every row of the list its parent came in."""
    for row in rows:
        row._siblings = rows
    return rows


def siblings_of(row) -> list:
    return getattr(row, "_siblings", None) or [row]


MESSAGE_ORDER = Ordering(
    fields=("sequence",), descending=False, to_json=lambda m: [m.sequence], from_json=lambda v: [int(v[0])]
)


def _parse_time(value: str) -> dt.datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "This cursor is not valid; start again from the first page.")
    return parsed


CONVERSATION_ORDER = Ordering(
    fields=("last_activity_at", "id"),
    descending=True,
    to_json=lambda c: [c.last_activity_at.isoformat(), c.pk],
    from_json=lambda v: [_parse_time(str(v[0])), int(v[1])],
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
        viewer = info.context.user
        memberships = models.Membership.objects.filter(user=self).select_related("practice").prefetch_related("grants")
        if viewer is None or viewer.pk != self.pk:
            memberships = memberships.filter(practice__memberships__user=viewer)
        return list(memberships.order_by("practice__name", "pk"))


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


@strawberry_django.type(models.Mailbox, name="Mailbox")
class MailboxType(relay.Node):
    name: str

    @strawberry.field
    def status(self: models.Mailbox) -> MailboxStatus:
        return MailboxStatus.ACTIVE if self.is_active else MailboxStatus.DEACTIVATED

    @strawberry.field
    def practice(self: models.Mailbox, info: Info) -> PracticeType:
        return info.context.memo(("practice", self.practice_id), lambda: models.Practice.objects.get(pk=self.practice_id))

    @strawberry.field
    def is_subscribed(self: models.Mailbox) -> bool:
        return bool(getattr(self, "is_subscribed", False))

    @strawberry.field
    def subscriber_count(self: models.Mailbox) -> int:
        return int(getattr(self, "subscriber_count", 0))

    @strawberry.field(description="Messages from patients in this mailbox that the viewer has not read.")
    def unread_count(self: models.Mailbox) -> int:
        return int(getattr(self, "unread_count", 0))

    @strawberry.field
    def subscribers(self: models.Mailbox, info: Info) -> list[UserType]:
        info.context.require_user()

        def load() -> dict[int, list[models.User]]:
            ids = [m.pk for m in siblings_of(self)]
            by_mailbox: dict[int, list[models.User]] = defaultdict(list)
            rows = models.MailboxSubscription.objects.filter(mailbox_id__in=ids).select_related("user")
            for sub in rows.order_by("user__full_name", "user__username"):
                by_mailbox[sub.mailbox_id].append(sub.user)
            return by_mailbox

        return info.context.memo(("subscribers", id(siblings_of(self))), load).get(self.pk, [])

    @strawberry.field(description="Conversations of this mailbox, most recent activity first. Subscribers only (else NOT_SUBSCRIBED).")
    def conversations(
        self: models.Mailbox,
        info: Info,
        status: ConversationStatus = models.ConversationStatus.ACTIVE,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[ConversationType] | None:
        user = info.context.require_user()
        info.context.memo(("mailbox-view", self.pk), lambda: require_mailbox_view(user, self))
        args = PageArgs(first=first, after=after, last=last, before=before)
        base = annotate_conversations(models.Conversation.objects.filter(status=status), user)
        siblings = [m for m in siblings_of(self) if getattr(m, "is_subscribed", False) and m.is_active]
        if args.is_first_page and len(siblings) > 1:
            key = ("mailbox-conversations", id(siblings_of(self)), status, args)

            def load() -> dict[int, Connection]:
                ids = [m.pk for m in siblings]
                return paginate_siblings(
                    base, args, CONVERSATION_ORDER, parent_field="mailbox_id", parent_ids=ids,
                    counts=lambda: dict(
                        models.Conversation.objects.filter(mailbox_id__in=ids, status=status)
                        .values_list("mailbox_id").annotate(n=Count("*")).values_list("mailbox_id", "n")
                    ),
                )

            connection = info.context.memo(key, load)[self.pk]
        else:
            connection = paginate(base.filter(mailbox=self), args, CONVERSATION_ORDER)
        with_siblings([edge.node for edge in connection.edges])
        mailbox_conversations_audit(user=user, mailbox=self, count=len(connection.edges))
        return connection


# ---- conversations and messages --------------------------------------------------------------------


def _check_conversation_access(conversation: models.Conversation, info: Info) -> None:
    """Field guard: whoever reached this conversation must still be allowed to read its messages."""
    context = info.context
    if context.patient is not None:
        require_patient_conversation(context.patient, conversation)
        return
    user = context.require_user()
    via = getattr(conversation, "_via", models.AccessSource.MAILBOX)
    context.memo(
        ("conversation-access", conversation.mailbox_id if via == models.AccessSource.MAILBOX else conversation.practice_id, via),
        lambda: require_conversation_access(user, conversation, via),
    )


@strawberry_django.type(models.Conversation, name="Conversation")
class ConversationType(relay.Node):
    status: ConversationStatus
    last_message_at: dt.datetime | None
    created_at: dt.datetime

    @strawberry.field
    def mailbox(self: models.Conversation) -> Annotated[MailboxType, strawberry.lazy("graph.types")]:
        return self.mailbox

    @strawberry.field
    def patient(self: models.Conversation) -> Annotated[PatientType, strawberry.lazy("graph.types")]:
        return self.patient

    @strawberry.field(description="Messages from the patient the viewer has not read (0 for patients).")
    def unread_count(self: models.Conversation) -> int:
        return int(getattr(self, "unread_count", 0))

    @strawberry.field(description="Oldest first by sequence: `last: 50` is the newest fifty, `before` pages back.")
    def messages(
        self: models.Conversation,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[MessageType] | None:
        _check_conversation_access(self, info)
        args = PageArgs(first=first, after=after, last=last, before=before)
        base = messages_with_details(models.Message.objects.all())
        siblings = siblings_of(self)
        if args.is_first_page and len(siblings) > 1:
            key = ("conversation-messages", id(siblings), args)
            by_id = {c.pk: c for c in siblings}

            def load() -> dict[int, Connection]:
                return paginate_siblings(
                    base, args, MESSAGE_ORDER, parent_field="conversation_id", parent_ids=list(by_id),
                    counts=lambda: {pk: c.last_sequence for pk, c in by_id.items()},
                )

            return info.context.memo(key, load)[self.pk]
        # Sequences have no gaps, so the count is the last sequence: no COUNT(*) over a long thread.
        return paginate(base.filter(conversation=self), args, MESSAGE_ORDER, count=lambda: self.last_sequence)


@strawberry_django.type(models.Attachment, name="Attachment")
class AttachmentType(relay.Node):
    filename: str
    content_type: str
    size: int
    sha256: str

    @strawberry.field(description="Authenticated download URL (same access rules as the message).")
    def url(self: models.Attachment, info: Info) -> str:
        path = self.download_path if hasattr(self, "download_path") else f"/attachments/{self.pk}/download"
        request = info.context.request
        return request.build_absolute_uri(path) if request is not None else path


@strawberry_django.type(models.Message, name="Message")
class MessageType(relay.Node):
    sequence: int
    direction: MessageDirection
    body: str
    sent_at: dt.datetime
    client_message_id: str | None

    @strawberry.field
    def sender_name(self: models.Message) -> str:
        return self.sender_name

    @strawberry.field
    def attachments(self: models.Message) -> list[AttachmentType]:
        return list(self.attachments.all())

    @strawberry.field
    def conversation_id(self: models.Message) -> relay.GlobalID:
        return relay.GlobalID("Conversation", str(self.conversation_id))


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

    @strawberry.field(description="The chart summary: every conversation with this patient, across all mailboxes.")
    def conversations(self: models.Patient, info: Info) -> list[ConversationType]:
        from core.reads import chart_conversations

        rows = list(chart_conversations(user=info.context.require_user(), patient=self))
        for row in rows:
            row._via = models.AccessSource.CHART_SUMMARY
        return with_siblings(rows)


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
        return self.actor_user

    @strawberry.field
    def actor_patient(self: models.AuditEvent) -> PatientType | None:
        return self.actor_patient

    @strawberry.field
    def patient(self: models.AuditEvent) -> PatientType | None:
        return self.patient

    @strawberry.field
    def practice_id(self: models.AuditEvent) -> relay.GlobalID | None:
        return relay.GlobalID("Practice", str(self.practice_id)) if self.practice_id else None


AUDIT_ORDER = Ordering(fields=("id",), descending=True, to_json=lambda a: [a.pk], from_json=lambda v: [int(v[0])])
