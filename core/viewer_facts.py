"""What a viewer sees on each row besides its columns (subscription, subscriber and unread counts), as
annotations of the query that loads the rows, and rows loaded with the details their fields show."""

from __future__ import annotations

from django.db.models import BigIntegerField, Exists, F, Func, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from core import sql
from core.models import Conversation, Mailbox, MailboxSubscription, Message, Patient, ReadState, User
from core.prepared import Prepared


def _count(queryset: QuerySet) -> Coalesce:
    """A correlated COUNT(*) subquery (Func, not Aggregate, so Django adds no GROUP BY)."""
    counted = queryset.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


MAILBOX_FACTS = frozenset({"subscriber_count", "is_subscribed", "unread_count"})

# Names, on each row, whose facts they are: a decision may take `is_subscribed` from a row only for that viewer.
FACTS_VIEWER = "facts_viewer_id"


def annotate_mailboxes(
    mailboxes: QuerySet[Mailbox], user: User | None, facts: frozenset[str] = MAILBOX_FACTS
) -> QuerySet[Mailbox]:
    """The viewer's facts about each mailbox (of `MAILBOX_FACTS`, those in `facts`: a read whose answer selects
    none of a fact leaves its subquery out; the fields load one left out for the whole list if asked after all)."""
    subscribers = MailboxSubscription.objects.filter(mailbox=OuterRef("pk"))
    if "subscriber_count" in facts:
        mailboxes = mailboxes.annotate(subscriber_count=_count(subscribers))
    if user is None:
        return mailboxes.annotate(is_subscribed=Value(False), unread_count=Value(0))
    if "is_subscribed" in facts:
        mailboxes = mailboxes.annotate(
            is_subscribed=Exists(subscribers.filter(user=user)), **{FACTS_VIEWER: Value(user.pk)}
        )
    if "unread_count" in facts:
        read = (
            ReadState.objects.filter(user=user, mailbox_id=OuterRef("pk"), conversation_active=True)
            .order_by()
            .values("mailbox_id")
            .annotate(total=Sum("read_patient_count"))
            .values("total")
        )
        mailboxes = mailboxes.annotate(
            unread_count=F("patient_message_count") - Coalesce(Subquery(read, output_field=BigIntegerField()), Value(0))
        )
    return mailboxes


def subscription_on_row(mailbox: Mailbox, user: User) -> bool | None:
    """The viewer's subscription as the read that loaded the mailbox annotated it, or None when it did not
    (left out, or annotated for someone else)."""
    if getattr(mailbox, FACTS_VIEWER, None) != user.pk:
        return None
    return bool(mailbox.is_subscribed)


def unread_count_of(user: User, *, conversation: str = "pk", patient_messages: str = "patient_message_count"):
    """The viewer's unread messages of a conversation, as an expression over rows naming it by `conversation`."""
    read = ReadState.objects.filter(user=user, conversation=OuterRef(conversation)).values("read_patient_count")[:1]
    return F(patient_messages) - Coalesce(Subquery(read, output_field=IntegerField()), Value(0))


def annotate_conversations(
    conversations: QuerySet[Conversation], user: User | None, *, mailbox: bool = True
) -> QuerySet[Conversation]:
    """Conversations with their patient, assignee and (unless the caller has it: `mailbox=False`) mailbox."""
    conversations = conversations.select_related(*(("mailbox",) if mailbox else ()), "patient", "assignee")
    if user is None:
        return conversations.annotate(unread_count=Value(0))
    return conversations.annotate(unread_count=unread_count_of(user))


def attach_sender_patients(messages: list[Message], conversations: dict[int, Conversation]) -> None:
    """Each patient-sent message's sender is its conversation's patient row (`conversations`, loaded with their
    patients); any other (no rule forbids it) is loaded, all of them in one query."""
    cache = Message.sender_patient.field
    others = []
    for message in messages:
        if message.sender_patient_id is None:
            continue
        conversation = conversations.get(message.conversation_id)
        patient = conversation and Conversation.patient.field.get_cached_value(conversation, None)
        if patient is not None and patient.pk == message.sender_patient_id:
            cache.set_cached_value(message, patient)
        else:
            others.append(message)
    if others:
        rows = Patient.objects.in_bulk({m.sender_patient_id for m in others})
        for message in others:
            cache.set_cached_value(message, rows[message.sender_patient_id])


# The staff of a page of messages by id, built and compiled once (core.prepared): building `in_bulk`'s queryset
# each time was most of this read's CPU (a 20-message page's people: 0.68 ms with in_bulk, 0.48 ms now).
_USERS = Prepared(
    lambda prepared: User.objects.filter(sql.condition(f"{sql.column(User, 'id')} IN ({prepared.text('ids')})"))
)


def attach_people(messages: list[Message]) -> None:
    """Each message's sender and withdrawer, on messages read with their conversations but without joining
    people: patient senders as `attach_sender_patients`, staff (senders and withdrawers) in one query for the
    whole list. Three outer joins made PostgreSQL plan a search page's 20-message read in 2.7 ms (0.9 ms without
    them; it runs in 0.7 ms)."""
    conversations = {m.conversation_id: Message.conversation.field.get_cached_value(m, None) for m in messages}
    attach_sender_patients(messages, {pk: c for pk, c in conversations.items() if c is not None})
    users = {pk for m in messages for pk in (m.sender_user_id, m.retracted_by_id) if pk is not None}
    found = {user.pk: user for user in _USERS.rows(texts={"ids": sql.integers(users)})} if users else {}
    sender, withdrawer = Message.sender_user.field, Message.retracted_by.field
    for message in messages:
        sender.set_cached_value(message, found.get(message.sender_user_id))
        withdrawer.set_cached_value(message, found.get(message.retracted_by_id))


def messages_with_details(
    messages: QuerySet[Message], *, attachments: bool = True, sender_patient: bool = True
) -> QuerySet[Message]:
    """Messages with their senders, and their attachments unless the answer does not show them; without the
    patient sender (`sender_patient=False`) when the caller holds the conversations' patients."""
    messages = messages.select_related("sender_user", *(("sender_patient",) if sender_patient else ()), "retracted_by")
    return messages.prefetch_related("attachments") if attachments else messages
