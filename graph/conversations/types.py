"""Conversations and their messages, attachments, assignment history; quick replies."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING, Annotated

import strawberry
import strawberry_django
from django.db.models import QuerySet
from strawberry import relay

from core import models, sql
from core.prepared import Prepared, Variants
from core.reads import audit_messages_in_answer
from core.viewer_facts import annotate_mailboxes, attach_sender_patients, messages_with_details
from graph import guards
from graph.batching import batch_of, passes, with_siblings
from graph.context import Context, Info
from graph.conversations.orderings import MESSAGE_ORDER, PORTAL_MESSAGE_ORDER
from graph.enums import ConversationPriority, ConversationStatus, MessageDirection
from graph.pagination import Connection, PageArgs, numbered_page, paginate, paginate_numbered
from graph.practice.types import UserType
from graph.selection import selected_anywhere

if TYPE_CHECKING:
    from graph.mailboxes.types import MailboxType
    from graph.patients.types import PatientType

# The two types that point back here (their modules import this one), resolved lazily.
MailboxRef = Annotated["MailboxType", strawberry.lazy("graph.mailboxes.types")]
PatientRef = Annotated["PatientType", strawberry.lazy("graph.patients.types")]


@strawberry_django.type(models.Conversation, name="Conversation")
class ConversationType(relay.Node):
    pk: relay.NodeID[int]
    status: ConversationStatus
    last_message_at: dt.datetime | None
    created_at: dt.datetime

    @strawberry.field
    def mailbox(self: models.Conversation, info: Info) -> MailboxRef:
        if hasattr(self.mailbox, "subscriber_count") or info.context.paths.of(self.mailbox).batch is not None:
            # Loaded with the viewer's facts, or batched with its list by the read (the facts load for all at once).
            return self.mailbox
        context = info.context
        batch = batch_of(context, self)

        def load() -> dict[int, models.Mailbox]:
            ids = {c.mailbox_id for c in batch.rows}
            rows = annotate_mailboxes(models.Mailbox.objects.filter(pk__in=ids), context.user)
            return {m.pk: m for m in with_siblings(context, list(rows))}

        return context.memo(("conversation-mailboxes", batch), load)[self.mailbox_id]

    @strawberry.field
    def patient(self: models.Conversation, info: Info) -> PatientRef:
        context = info.context
        batch = batch_of(context, self)
        # The patients of one list of conversations form one list too (for their chart `conversations`).
        context.memo(("conversation-patients", batch), lambda: with_siblings(context, [c.patient for c in batch.rows]))
        return self.patient

    @strawberry.field(description="Messages from the patient the viewer has not read (0 for patients).")
    def unread_count(self: models.Conversation) -> int:
        return int(getattr(self, "unread_count", 0))

    @strawberry.field(description="Who works this conversation (null: unassigned). Staff only (null for patients).")
    def assignee(self: models.Conversation, info: Info) -> UserType | None:
        context = info.context
        if context.patient is not None or self.assignee is None:
            return None
        batch = batch_of(context, self)
        # The assignees of one list form one list too (their `memberships` load in one query).
        context.memo(
            ("conversation-assignees", batch),
            lambda: with_siblings(context, [c.assignee for c in batch.rows if c.assignee_id is not None]),
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
        batch = batch_of(context, self)

        def load() -> dict[int, list[models.AssignmentChange]]:
            rows = models.AssignmentChange.objects.filter(conversation_id__in={c.pk for c in batch.rows})
            by_conversation: dict[int, list[models.AssignmentChange]] = defaultdict(list)
            users = []
            for change in rows.select_related("assignee", "previous_assignee", "changed_by").order_by("at", "id"):
                by_conversation[change.conversation_id].append(change)
                users += [u for u in (change.assignee, change.previous_assignee, change.changed_by) if u is not None]
            with_siblings(context, users)
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
        path = context.paths.of(self)
        answer_of = path.answer_of
        if answer_of and context.user is not None:
            context.memo(
                ("messages-in-answer", self.pk),
                lambda: audit_messages_in_answer(
                    user=context.user, conversation=self, via=path.via or "", operation=answer_of
                ),
            )
        args = PageArgs(first=first, after=after, last=last, before=before)
        batch = batch_of(info.context, self)
        patient = context.patient is not None
        via = None if patient else path.via or models.AccessSource.MAILBOX
        # A patient's thread is their numbering of the messages they can see: notes are not in it at all.
        ordering, last_of = (PORTAL_MESSAGE_ORDER, _portal_last) if patient else (MESSAGE_ORDER, _staff_last)

        def load() -> dict[int, Connection]:
            # A patient's messages are sent by the conversation's patient, already loaded with each conversation:
            # not joined again per message (one Patient instance per thread instead of one per message).
            threads = batch.rows if args.is_first_page else [self]
            patients = all(models.Conversation.patient.is_cached(c) for c in threads)
            # Sequences have no gaps, so a thread's count is its last sequence: no COUNT(*) over long threads.
            if args.is_first_page:
                parents = {c.pk: c for c in batch.rows if passes(lambda c: guards.conversation_read(context, c), c)}
                connections = paginate_numbered(
                    _THREAD_PAGES[patient, not patients, args.backwards],
                    models.Message,
                    args,
                    ordering,
                    parent_field="conversation",
                    ranges={pk: _newest_or_oldest(c, args, last_of) for pk, c in parents.items()},
                    counts=lambda: {pk: last_of(c) for pk, c in parents.items()},
                )
            else:  # a cursor belongs to one conversation's list
                base = _thread_messages(patient=patient, sender_patient=not patients)
                connections = {
                    self.pk: paginate(base.filter(conversation=self), args, ordering, count=lambda: last_of(self))
                }
            nodes = [edge.node for connection in connections.values() for edge in connection.edges]
            if patients:
                attach_sender_patients(nodes, {c.pk: c for c in threads})
            context.paths.reached(nodes, via)
            for node in nodes:
                if patient:
                    node.sequence = node.portal_sequence
            if selected_anywhere(info, "attachments"):
                attach_attachments(context, nodes)
            return connections

        key = ("conversation-messages", batch if args.is_first_page else self.pk, args)
        return context.memo(key, load)[self.pk]


def _thread_messages(*, patient: bool, sender_patient: bool) -> QuerySet[models.Message]:
    """A thread's messages as the viewer's page shows them (a patient's: those in their numbering)."""
    base = messages_with_details(models.Message.objects.all(), attachments=False, sender_patient=sender_patient)
    return base.filter(portal_sequence__isnull=False) if patient else base


# First pages of many threads, by (patient viewer, sender patients joined, backwards).
_THREAD_PAGES = Variants(
    lambda prepared, key: numbered_page(
        prepared,
        _thread_messages(patient=key[0], sender_patient=key[1]),
        PORTAL_MESSAGE_ORDER if key[0] else MESSAGE_ORDER,
        backwards=key[2],
    )
)


# The attachments of a page's messages (`messages`: their ids), in Meta.ordering (id); built and compiled once.
_ATTACHMENTS = Prepared(
    lambda prepared: models.Attachment.objects.filter(
        sql.condition(f"{sql.column(models.Attachment, 'message')} IN ({prepared.text('messages')})")
    )
)


def attach_attachments(context: Context, messages: list[models.Message]) -> None:
    """The attachments of a page of messages in one query, kept on each message as a plain list: Django's
    `prefetch_related` builds a filtered queryset per message to hold its cache (250 per large page, ~5% of its
    CPU), and the field only reads the rows."""
    by_message: dict[int, list[models.Attachment]] = {m.pk: [] for m in messages}
    for attachment in _ATTACHMENTS.rows(texts={"messages": sql.integers(by_message) or "NULL"}):
        by_message[attachment.message_id].append(attachment)
    for message in messages:
        context.paths.of(message).attachments = by_message[message.pk]


def _staff_last(conversation: models.Conversation) -> int:
    return conversation.last_sequence


def _portal_last(conversation: models.Conversation) -> int:
    return conversation.portal_last_sequence


def _newest_or_oldest(conversation: models.Conversation, args: PageArgs, last_of=_staff_last) -> tuple[int, int]:
    """Sequences have no gaps, so the first page of a thread is a range of them: the newest n and the one before
    (to learn if there is more) are last - n .. last, the oldest n (+1) are 1 .. n + 1. A message sent after the
    conversation row was read is on the next read, as it is in `totalCount` (the same `last`)."""
    size = args.size()
    last = last_of(conversation)
    return (max(last - size, 1), last) if args.backwards else (1, size + 1)


@strawberry_django.type(models.Attachment, name="Attachment")
class AttachmentType(relay.Node):
    pk: relay.NodeID[int]
    filename: str
    content_type: str
    size: int
    sha256: str

    @strawberry.field(description="Authenticated download URL (same access rules as the message).")
    def url(self: models.Attachment, info: Info) -> str:
        path = self.download_path_for(info.context.paths.via(self))
        request = info.context.request
        return request.build_absolute_uri(path) if request is not None else path


@strawberry.type(description="A message withdrawn by the practice (entered in error). Patients see only `at`.")
class MessageRetraction:
    at: dt.datetime
    by: UserType | None = strawberry.field(description="Who withdrew it (null for patients).")
    reason: str | None = strawberry.field(description="Why (null for patients).")


def _withdrawn_for_patient(message: models.Message, context: Context) -> bool:
    return message.retracted_at is not None and context.patient is not None


@strawberry_django.type(models.Message, name="Message")
class MessageType(relay.Node):
    pk: relay.NodeID[int]
    sequence: int
    direction: MessageDirection
    sent_at: dt.datetime
    client_message_id: str | None
    is_automatic: bool = strawberry_django.field(
        description="The mailbox's auto-reply: sent by no one, signed with the mailbox's name."
    )

    @strawberry.field(description="Empty for a patient once the practice withdrew the message.")
    def body(self: models.Message, info: Info) -> str:
        return "" if _withdrawn_for_patient(self, info.context) else self.body

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
        if _withdrawn_for_patient(self, info.context):
            return []
        paths = info.context.paths
        path = paths.of(self)
        rows = path.attachments
        if rows is None:
            rows = list(self.attachments.all())
        return paths.reached(rows, path.via) if rows else rows

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
    pk: relay.NodeID[int]
    title: str
    body: str
