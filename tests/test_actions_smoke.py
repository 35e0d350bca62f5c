"""The domain rules of SPEC §2 through the core actions."""

from __future__ import annotations

import pytest

from core import actions
from core.errors import DomainError, ErrorCode
from core.models import AccessSource, ConversationStatus, Event, EventKind, Message


def test_sending_twice_numbers_messages_without_gaps(world):
    first = actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi")
    second = actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hello")
    assert (first.sequence, second.sequence) == (1, 2)
    assert second.conversation_id == world.conversation.pk


def test_repeated_client_message_id_returns_the_first_message(world):
    one = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi", client_message_id="c-1"
    )
    again = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi!", client_message_id="c-1"
    )
    assert again.pk == one.pk
    assert Message.objects.count() == 1


def test_unsubscribed_staff_is_refused_in_mailbox_view_but_may_use_the_chart(world):
    with pytest.raises(DomainError) as refused:
        actions.send_staff_message(acting_user=world.staff, conversation_id=world.conversation.pk, body="Hi")
    assert refused.value.code == ErrorCode.NOT_SUBSCRIBED
    message = actions.send_staff_message(
        acting_user=world.staff, conversation_id=world.conversation.pk, body="Hi", via=AccessSource.CHART_SUMMARY
    )
    assert message.sequence == 1


def test_patient_message_reactivates_an_archived_conversation(world):
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    world.conversation.refresh_from_db()
    assert world.conversation.status == ConversationStatus.ARCHIVED
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Still there?")
    world.conversation.refresh_from_db()
    assert world.conversation.status == ConversationStatus.ACTIVE
    kinds = list(Event.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == [
        EventKind.CONVERSATION_ARCHIVED, EventKind.CONVERSATION_REACTIVATED, EventKind.MESSAGE_ADDED,
    ]


def test_mailbox_with_conversations_cannot_be_deleted(world):
    with pytest.raises(DomainError) as refused:
        actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    assert refused.value.code == ErrorCode.MAILBOX_NOT_EMPTY
    assert actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk) == world.scheduling.pk


def test_mailbox_names_are_unique_ignoring_case(world):
    with pytest.raises(DomainError) as refused:
        actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="  BILLING ")
    assert refused.value.code == ErrorCode.DUPLICATE_NAME


def test_other_practice_mailbox_is_not_found(world):
    with pytest.raises(DomainError) as refused:
        actions.rename_mailbox(acting_user=world.outsider, mailbox_id=world.billing.pk, name="Mine")
    assert refused.value.code == ErrorCode.NOT_FOUND
