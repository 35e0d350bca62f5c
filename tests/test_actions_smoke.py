"""The domain rules of SPEC §2 through the core actions."""

from __future__ import annotations

import pytest

from core import actions
from core.errors import DomainError, ErrorCode
from core.models import AccessSource, ConversationStatus, Event, EventKind, MailboxSubscription, Message


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
        EventKind.CONVERSATION_ARCHIVED,
        EventKind.CONVERSATION_REACTIVATED,
        EventKind.MESSAGE_ADDED,
    ]


def test_mailbox_with_conversations_cannot_be_deleted(world):
    with pytest.raises(DomainError) as refused:
        actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    assert refused.value.code == ErrorCode.MAILBOX_NOT_EMPTY
    assert (
        actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk) == world.scheduling.pk
    )


def test_mailbox_names_are_unique_ignoring_case(world):
    with pytest.raises(DomainError) as refused:
        actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="  BILLING ")
    assert refused.value.code == ErrorCode.DUPLICATE_NAME


def test_other_practice_mailbox_is_not_found(world):
    with pytest.raises(DomainError) as refused:
        actions.rename_mailbox(acting_user=world.outsider, mailbox_id=world.billing.pk, name="Mine")
    assert refused.value.code == ErrorCode.NOT_FOUND


def test_all_mailboxes_access_subscribes_active_ones_and_keeps_deactivated_subscriptions(world):
    # given a deactivated mailbox the user was subscribed to, and one they were not
    old = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Old")
    kept = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Kept")
    actions.set_mailbox_subscribers(acting_user=world.mailbox_admin, mailbox_id=kept.pk, user_ids=[world.staff.pk])
    for mailbox in (old, kept):
        actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=mailbox.pk)
    # when an admin subscribes the user to all mailboxes of the practice
    actions.set_user_mailbox_access(
        acting_user=world.mailbox_admin, user_id=world.staff.pk, practice_id=world.practice.pk, all_mailboxes=True
    )
    # then every active mailbox and the kept deactivated one, never the other deactivated one
    subscribed = set(MailboxSubscription.objects.filter(user=world.staff).values_list("mailbox__name", flat=True))
    assert subscribed == {"Billing", "Scheduling", "Kept"}


def test_nobody_is_newly_subscribed_to_a_deactivated_mailbox(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk)
    with pytest.raises(DomainError) as by_access_page:
        actions.set_user_mailbox_access(
            acting_user=world.mailbox_admin,
            user_id=world.staff.pk,
            practice_id=world.practice.pk,
            mailbox_ids=[world.scheduling.pk],
        )
    with pytest.raises(DomainError) as by_subscriber_list:
        actions.set_mailbox_subscribers(
            acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk, user_ids=[world.staff.pk]
        )
    assert by_access_page.value.code == by_subscriber_list.value.code == ErrorCode.MAILBOX_DEACTIVATED
    assert not MailboxSubscription.objects.filter(user=world.staff).exists()


def test_non_admin_is_forbidden_before_their_input_is_judged(world):
    with pytest.raises(DomainError) as refused:
        actions.set_practice_setting(acting_user=world.staff, practice_id=world.practice.pk, key="bad key", value="T")
    assert refused.value.code == ErrorCode.FORBIDDEN


def test_setting_an_unchanged_value_writes_no_audit_row(world):
    from core.models import WORKBENCH_SETTING, AuditEvent

    before = AuditEvent.objects.count()
    actions.set_practice_setting(
        acting_user=world.owner, practice_id=world.practice.pk, key=WORKBENCH_SETTING, value="T"
    )
    assert AuditEvent.objects.count() == before


def test_unread_counts_come_from_counters_per_conversation_and_per_mailbox(world):
    # given two patients writing to Billing, three messages in all
    from core.models import Conversation, Mailbox
    from core.viewer_facts import annotate_conversations, annotate_mailboxes

    for patient, body in ((world.patient, "one"), (world.patient, "two"), (world.other_patient, "three")):
        actions.send_patient_message(acting_patient=patient, mailbox_id=world.billing.pk, body=body)

    def unread() -> tuple[int, dict[int, int]]:
        mailbox = annotate_mailboxes(Mailbox.objects.filter(pk=world.billing.pk), world.subscriber).get()
        threads = annotate_conversations(Conversation.objects.filter(mailbox=world.billing), world.subscriber)
        return mailbox.unread_count, {c.patient_id: c.unread_count for c in threads}

    assert unread() == (3, {world.patient.pk: 2, world.other_patient.pk: 1})
    # when the subscriber reads one thread, then answers the other (a send marks it read for the sender)
    actions.mark_conversation_read(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    assert unread() == (1, {world.patient.pk: 0, world.other_patient.pk: 1})
    other = Conversation.objects.get(patient=world.other_patient)
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=other.pk, body="On it")
    # then nothing is unread for them, while a colleague still has all three
    assert unread() == (0, {world.patient.pk: 0, world.other_patient.pk: 0})
    colleague = annotate_mailboxes(Mailbox.objects.filter(pk=world.billing.pk), world.mailbox_admin).get()
    assert colleague.unread_count == 3
