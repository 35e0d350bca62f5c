"""Reads of protected data: each checks access through `permissions/`, writes its audit row, and returns
rows annotated with what the viewer needs (`core.viewer_facts`)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from core import audit, message_search, ratelimit, sql
from core import search as patient_search
from core.errors import DomainError, ErrorCode, not_found
from core.models import (
    AccessSource,
    AuditAction,
    Conversation,
    Mailbox,
    MailboxSubscription,
    Message,
    Patient,
    QuickReply,
    User,
)
from core.prepared import Prepared, Variants
from core.text import require_storable_text, search_words
from core.viewer_facts import (
    MAILBOX_FACTS,
    annotate_conversations,
    annotate_mailboxes,
    attach_people,
    unread_count_of,
)
from permissions import (
    require_conversation_access,
    require_mailbox_view,
    require_member,
    require_portal,
    require_workbench_member,
)

# ---- staff reads -----------------------------------------------------------------------------------


def list_mailboxes(
    *,
    user: User | None,
    practice_id: int,
    active: bool | None = True,
    subscribed_only: bool = False,
    facts: frozenset[str] = MAILBOX_FACTS,
) -> QuerySet[Mailbox]:
    require_workbench_member(user, practice_id)
    mailboxes = Mailbox.objects.filter(practice_id=practice_id)
    if active is not None:
        mailboxes = mailboxes.filter(is_active=active)
    if subscribed_only:
        mailboxes = mailboxes.filter(subscriptions__user=user)
    return annotate_mailboxes(mailboxes, user, facts).order_by("name", "pk")


# One mailbox with the viewer's facts, by (facts, signed in): built and compiled once per shape (core.prepared).
_MAILBOX = Variants(
    lambda prepared, key: annotate_mailboxes(
        Mailbox.objects.filter(pk=prepared.value("mailbox")),
        User(pk=prepared.value("user")) if key[1] else None,
        key[0],
    ).order_by("pk")[:1]
)


def get_mailbox(*, user: User | None, mailbox_id: int, facts: frozenset[str] = MAILBOX_FACTS) -> Mailbox:
    values = {"mailbox": mailbox_id} if user is None else {"mailbox": mailbox_id, "user": user.pk}
    [mailbox] = _MAILBOX[facts, user is not None].rows(values=values) or [None]
    if mailbox is None:
        raise not_found("mailbox")
    require_workbench_member(user, mailbox.practice_id)
    return mailbox


def open_conversation(*, user: User | None, conversation_id: int, via: AccessSource) -> Conversation:
    conversation = annotate_conversations(Conversation.objects.filter(pk=conversation_id), user).first()
    if conversation is None:
        raise not_found("conversation")
    require_conversation_access(user, conversation, via)
    audit.record_conversation_read(operation="conversation", user=user, conversation=conversation, via=via)
    return conversation


def audit_mailbox_conversation_reads(*, user: User, rows: dict[Mailbox, list[Conversation]]) -> None:
    """One audit row per patient whose conversations the lists showed (their messages too, when asked), so
    `auditEvents(patientId:)` finds every such read; a list that showed nobody leaves one row for its mailbox.
    One INSERT for all the lists of a request's page, whatever their length."""
    by_patient: dict[int, list[Conversation]] = {}
    for conversations in rows.values():
        for conversation in conversations:
            by_patient.setdefault(conversation.patient_id, []).append(conversation)
    shown = [
        {
            "operation": "mailbox.conversations",
            "action": AuditAction.READ,
            "practice": conversations[0].practice_id,
            "actor_user": user,
            "target": conversations[0] if len(conversations) == 1 else None,
            "patient": patient_id,
            "via": AccessSource.MAILBOX,
            "detail": {
                "conversation_ids": [c.pk for c in conversations],
                "mailbox_ids": [c.mailbox_id for c in conversations],
            },
        }
        for patient_id, conversations in by_patient.items()
    ]
    empty = [
        {
            "operation": "mailbox.conversations",
            "action": AuditAction.READ,
            "practice": mailbox.practice_id,
            "actor_user": user,
            "target": mailbox,
            "via": AccessSource.MAILBOX,
            "detail": {"rows": 0},
        }
        for mailbox, conversations in rows.items()
        if not conversations
    ]
    audit.record_read([*shown, *empty])


def audit_messages_in_answer(*, user: User, conversation: Conversation, via: AccessSource, operation: str) -> None:
    """A change that answers with the conversation (archive, mark read, start…) can show its messages: that is
    a read of them too, recorded once per conversation and request when the messages are actually asked for."""
    audit.record_conversation_read(operation=f"{operation}.messages", user=user, conversation=conversation, via=via)


def get_patient(*, user: User | None, patient_id: int) -> Patient:
    patient = Patient.objects.filter(pk=patient_id).first()
    if patient is None:
        raise not_found("patient")
    require_member(user, patient.practice_id)
    audit.record(
        operation="patient",
        action=AuditAction.READ,
        practice=patient.practice_id,
        actor_user=user,
        target=patient,
        patient=patient,
        via=AccessSource.CHART_SUMMARY,
    )
    return patient


def chart_conversations(*, user: User | None, patient: Patient) -> QuerySet[Conversation]:
    """The chart summary: all of a patient's conversations across mailboxes, subscribed or not."""
    require_workbench_member(user, patient.practice_id)
    audit.record(
        operation="patient.conversations",
        action=AuditAction.READ,
        practice=patient.practice_id,
        actor_user=user,
        target=patient,
        patient=patient,
        via=AccessSource.CHART_SUMMARY,
    )
    return annotate_conversations(Conversation.objects.filter(patient=patient), user).order_by(
        "-last_activity_at", "-pk"
    )


def chart_conversations_of(*, user: User | None, patients: list[Patient]) -> dict[int, list[Conversation]]:
    """`chart_conversations` for a list of patients at once (one query, one audit INSERT)."""
    patients = list({p.pk: p for p in patients}.values())
    for practice_id in {p.practice_id for p in patients}:
        require_workbench_member(user, practice_id)
    by_patient: dict[int, list[Conversation]] = {p.pk: [] for p in patients}
    if not patients:
        return by_patient
    rows = annotate_conversations(Conversation.objects.filter(patient_id__in=by_patient), user)
    for conversation in rows.order_by("-last_activity_at", "-pk"):
        by_patient[conversation.patient_id].append(conversation)
    audit.record_read(
        {
            "operation": "patient.conversations",
            "action": AuditAction.READ,
            "practice": p.practice_id,
            "actor_user": user,
            "target": p,
            "patient": p,
            "via": AccessSource.CHART_SUMMARY,
        }
        for p in patients
    )
    return by_patient


def search_patients(*, user: User | None, practice_id: int, query: str, limit: int) -> list[Patient]:
    # Finding a patient is how a conversation is started, from the mailbox view or the chart, and in this service
    # the chart only holds messaging: a staff mailbox operation, refused with the workbench switch off (SPEC §2).
    require_workbench_member(user, practice_id)
    most = settings.MAILBOX["SEARCH_MAX_RESULTS"]
    if not 1 <= limit <= most:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"first must be between 1 and {most}: a search returns at most {most} patients; type more to narrow it.",
            field="first",
        )
    require_storable_text(query, "query")  # it is kept in the audit trail
    ratelimit.hit(ratelimit.SEARCHES, f"user:{user.pk}")
    results = list(patient_search.search_patients(practice_id, query, limit))
    # The results carry each patient's name, birth date and account number: one row per patient found (one
    # without a patient when none is), so the search shows in each of their trails.
    audit.record_read(
        {
            "operation": "searchPatients",
            "action": AuditAction.EXECUTE,
            "practice": practice_id,
            "actor_user": user,
            "target": patient,
            "patient": patient,
            "query": query,
            "detail": {"results": len(results)},
        }
        for patient in results or [None]
    )
    return results


@dataclass(frozen=True)
class MessageHit:
    message: Message
    conversation: Conversation
    snippet: list[message_search.Segment]


@dataclass(frozen=True)
class MessageSearchPage:
    hits: list[MessageHit]
    has_more: bool


def _message_search_words(query: str) -> list[str]:
    if len(query) > message_search.MAX_QUERY_CHARS:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"The search text is {len(query)} characters long; use at most {message_search.MAX_QUERY_CHARS}.",
            field="query",
        )
    words = list(dict.fromkeys(search_words(query)))
    if not words:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, "Type at least one word (letters or digits) to search for.", field="query"
        )
    if len(words) > message_search.MAX_QUERY_WORDS:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"The search text has {len(words)} words; use at most {message_search.MAX_QUERY_WORDS}.",
            field="query",
        )
    # A word that is a prefix of another is met by the same word of the message: only the longer one is needed.
    return [w for w in words if not any(o != w and o.startswith(w) for o in words)]


# The viewer's subscribed, active mailboxes of a practice, as SQL a search runs inside its own statement.
_SUBSCRIBED_MAILBOXES = Prepared(
    lambda prepared: MailboxSubscription.objects.filter(
        user_id=prepared.value("user"), mailbox__practice_id=prepared.value("practice"), mailbox__is_active=True
    ).values_list("mailbox_id", flat=True)
)


def _searched_mailboxes(user: User, practice_id: int, mailbox_id: int | None) -> tuple[str, list | tuple]:
    """The ids of the mailboxes a search looks in, as the SQL and parameters of a query the search runs inside
    its own statement: the viewer's subscribed, active mailboxes of the practice, or the one asked for (another
    practice's or an unknown one: NOT_FOUND; not subscribed: NOT_SUBSCRIBED; deactivated)."""
    if mailbox_id is None:
        return _SUBSCRIBED_MAILBOXES.statement(values={"user": user.pk, "practice": practice_id})
    mailbox = Mailbox.objects.filter(pk=mailbox_id, practice_id=practice_id).first()
    if mailbox is None:
        raise not_found("mailbox")
    require_mailbox_view(user, mailbox)
    return Mailbox.objects.filter(pk=mailbox.pk).values_list("pk", flat=True).query.sql_with_params()


# The messages a search found (`ids`), with their conversations (mailbox, patient, the viewer's unread count), in
# one query built and compiled once (core.prepared); their people come after (`attach_people`).
def _search_hits(prepared: Prepared) -> QuerySet[Message]:
    ids = sql.condition(f"{sql.column(Message, 'id')} IN ({prepared.text('ids')})")
    unread = unread_count_of(
        User(pk=prepared.value("user")),
        conversation="conversation_id",
        patient_messages="conversation__patient_message_count",
    )
    return (
        Message.objects.filter(ids)
        .select_related("conversation__mailbox", "conversation__patient")
        .annotate(_unread=unread)
    )


_SEARCH_HITS = Prepared(_search_hits)


def search_messages(
    *,
    user: User | None,
    practice_id: int,
    query: str,
    mailbox_id: int | None,
    limit: int,
    after: message_search.Position | None,
) -> MessageSearchPage:
    """Messages of the viewer's subscribed mailboxes (or of one of them) matching every word of `query` by prefix,
    newest first; audited with the query text, one row per patient whose messages were shown. Conversations share
    one mailbox object per mailbox; attachments are left to the caller (`graph.types.attach_attachments`)."""
    require_workbench_member(user, practice_id)
    most = settings.MAILBOX["SEARCH_MAX_RESULTS"]
    if not 1 <= limit <= most:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"first must be between 1 and {most}: a page of search results holds at most {most} messages.",
            field="first",
        )
    require_storable_text(query, "query")  # it is kept in the audit trail
    words = _message_search_words(query)
    mailboxes = _searched_mailboxes(user, practice_id, mailbox_id)
    ratelimit.hit(ratelimit.SEARCHES, f"user:{user.pk}")
    ids = message_search.matching_message_ids(words, mailboxes, after=after, limit=limit + 1)
    has_more, ids = len(ids) > limit, ids[:limit]
    # The messages with their conversations (mailbox, patient, the viewer's unread count) in one query; none to
    # build for no hits (Django would not run it, but building it is a third of an empty answer's CPU).
    rows = _SEARCH_HITS.rows(values={"user": user.pk}, texts={"ids": sql.integers(ids)}) if ids else ()
    attach_people(rows)  # senders and withdrawers, not joined (core.viewer_facts)
    messages = {m.pk: m for m in rows}
    conversations: dict[int, Conversation] = {}
    mailboxes: dict[int, Mailbox] = {}
    for message in messages.values():  # one object per conversation and per mailbox, shared by their messages
        conversation = conversations.setdefault(message.conversation_id, message.conversation)
        conversation.unread_count = message._unread
        conversation.mailbox = mailboxes.setdefault(conversation.mailbox_id, conversation.mailbox)
        message.conversation = conversation
    hits = [
        MessageHit(messages[pk], messages[pk].conversation, message_search.snippet(messages[pk].body, words))
        for pk in ids
        if pk in messages  # not deleted since the search (a patient's removal)
    ]
    by_patient: dict[int | None, list[MessageHit]] = {}
    for hit in hits:
        by_patient.setdefault(hit.conversation.patient_id, []).append(hit)
    audit.record_read(
        {
            "operation": "searchMessages",
            "action": AuditAction.EXECUTE,
            "practice": practice_id,
            "actor_user": user,
            "patient": patient_id,
            "via": AccessSource.MAILBOX,
            "query": query,
            "detail": {
                "results": len(hits),
                "mailbox_id": mailbox_id,
                "message_ids": [h.message.pk for h in patient_hits],
                "conversation_ids": sorted({h.conversation.pk for h in patient_hits}),
            },
        }
        for patient_id, patient_hits in (by_patient or {None: []}).items()
    )
    return MessageSearchPage(hits=hits, has_more=has_more)


def quick_replies(*, user: User | None, practice_id: int, query: str | None = None) -> QuerySet[QuickReply]:
    """Every staff member of the practice (workbench on) uses them; `query` narrows by words of the title."""
    require_workbench_member(user, practice_id)
    require_storable_text(query, "query")
    replies = QuickReply.objects.filter(practice_id=practice_id)
    for word in (query or "").split():
        replies = replies.filter(title__icontains=word)
    return replies.order_by("title", "pk")


# ---- portal reads ----------------------------------------------------------------------------------


def portal_mailboxes(*, patient: Patient) -> QuerySet[Mailbox]:
    require_portal(patient.practice_id)
    return annotate_mailboxes(Mailbox.objects.filter(practice_id=patient.practice_id, is_active=True), None)


def portal_conversations(*, patient: Patient) -> QuerySet[Conversation]:
    require_portal(patient.practice_id)
    audit.record(
        operation="portalConversations",
        action=AuditAction.READ,
        practice=patient.practice_id,
        actor_patient=patient,
        patient=patient,
        via=AccessSource.PORTAL,
    )
    return annotate_conversations(Conversation.objects.filter(patient=patient), None).order_by(
        "-last_activity_at", "-pk"
    )
