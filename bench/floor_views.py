"""Floor of measurement 2: a plain async Django JSON view reading the same rows as the GraphQL page, with the ORM.

No GraphQL, no permission checks, no audit: the cost of fetching and serializing the rows themselves.
"""

from __future__ import annotations

from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.http import JsonResponse

from core.models import Conversation, Message, User
from core.viewer_facts import annotate_conversations


async def conversations_floor(request):
    mailbox_id = int(request.GET["mailbox"])
    first = int(request.GET.get("first", 50))
    last = int(request.GET.get("last", 5))
    user = await User.objects.aget(pk=int(request.GET["user"]))
    conversations = [
        c
        async for c in annotate_conversations(
            Conversation.objects.filter(mailbox_id=mailbox_id, status="ACTIVE"), user
        ).order_by("-last_activity_at", "-id")[:first]
    ]
    ids = [c.pk for c in conversations]
    messages: dict[int, list[dict]] = {pk: [] for pk in ids}
    newest = (
        Message.objects.filter(conversation_id__in=ids)
        .select_related("sender_user", "sender_patient")
        .annotate(_row=Window(RowNumber(), partition_by=[F("conversation_id")], order_by=F("sequence").desc()))
        .filter(_row__lte=last)
    )
    async for m in newest:
        messages[m.conversation_id].append(_message_row(m))
    total = await Conversation.objects.filter(mailbox_id=mailbox_id, status="ACTIVE").acount()
    return JsonResponse(_page(total, conversations, messages))


def _message_row(m: Message) -> dict:
    return {
        "id": m.pk,
        "sequence": m.sequence,
        "direction": m.direction,
        "body": m.body,
        "sentAt": m.sent_at.isoformat(),
        "clientMessageId": m.client_message_id,
        "senderName": m.sender_user.display_name() if m.sender_user_id else m.sender_patient.full_name,
        "attachments": [],
    }


def _page(total: int, conversations: list[Conversation], messages: dict[int, list[dict]]) -> dict:
    return {
        "totalCount": total,
        "edges": [
            {
                "id": c.pk,
                "status": c.status,
                "unreadCount": c.unread_count,
                "lastMessageAt": c.last_message_at.isoformat() if c.last_message_at else None,
                "mailbox": {"id": c.mailbox_id, "name": c.mailbox.name},
                "patient": {
                    "id": c.patient_id,
                    "fullName": c.patient.full_name,
                    "preferredPronoun": c.patient.preferred_pronoun,
                    "dateOfBirth": c.patient.date_of_birth.isoformat(),
                    "accountNumber": c.patient.account_number,
                },
                "messages": sorted(messages[c.pk], key=lambda m: m["sequence"]),
            }
            for c in conversations
        ],
    }


def conversations_floor_sync(request):
    """The same rows and JSON as `conversations_floor`, as a sync view: the in-process floor (this thread's CPU)."""
    mailbox_id = int(request.GET["mailbox"])
    first = int(request.GET.get("first", 50))
    last = int(request.GET.get("last", 5))
    user = User.objects.get(pk=int(request.GET["user"]))
    conversations = list(
        annotate_conversations(Conversation.objects.filter(mailbox_id=mailbox_id, status="ACTIVE"), user).order_by(
            "-last_activity_at", "-id"
        )[:first]
    )
    ids = [c.pk for c in conversations]
    messages: dict[int, list[dict]] = {pk: [] for pk in ids}
    newest = (
        Message.objects.filter(conversation_id__in=ids)
        .select_related("sender_user", "sender_patient")
        .annotate(_row=Window(RowNumber(), partition_by=[F("conversation_id")], order_by=F("sequence").desc()))
        .filter(_row__lte=last)
    )
    for m in newest:
        messages[m.conversation_id].append(_message_row(m))
    total = Conversation.objects.filter(mailbox_id=mailbox_id, status="ACTIVE").count()
    return JsonResponse(_page(total, conversations, messages))
