"""Races of SPEC §2 with real threads, each on its own database connection: gap-free sequences, idempotent
sends, and delete against a concurrent new conversation. The row-lock races need PostgreSQL; SQLite serializes
writers with IMMEDIATE transactions, so the numbering races run there too."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections

from core import actions
from core.errors import DomainError, ErrorCode
from core.models import Conversation, Mailbox, Message

ON_POSTGRES = (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://"))
requires_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Starts every call in its own thread at the same instant; returns each result or raised exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:  # reported to the test, which decides what is allowed
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
    return results


def no_exceptions(results: list[Any]) -> list[Any]:
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


def test_two_simultaneous_sends_are_numbered_1_and_2(world):
    results = no_exceptions(
        run_at_once(
            lambda: actions.send_staff_message(
                acting_user=world.subscriber, conversation_id=world.conversation.pk, body="From staff"
            ),
            lambda: actions.send_patient_message(
                acting_patient=world.patient, mailbox_id=world.billing.pk, body="From the patient"
            ),
        )
    )

    assert sorted(message.sequence for message in results) == [1, 2]
    assert Conversation.objects.get(pk=world.conversation.pk).last_sequence == 2


@pytest.mark.parametrize("senders", [8])
def test_many_simultaneous_sends_are_numbered_without_gaps(world, senders):
    users = [world.subscriber, world.mailbox_admin] * (senders // 2)

    no_exceptions(
        run_at_once(
            *(
                lambda user=user, n=n: actions.send_staff_message(
                    acting_user=user, conversation_id=world.conversation.pk, body=f"Message {n}"
                )
                for n, user in enumerate(users)
            )
        )
    )

    sequences = sorted(Message.objects.filter(conversation=world.conversation).values_list("sequence", flat=True))
    assert sequences == list(range(1, senders + 1))


@pytest.mark.postgres
@requires_postgres
@pytest.mark.parametrize("senders", [8])
def test_simultaneous_sends_with_one_client_message_id_make_one_message(world, senders):
    results = no_exceptions(
        run_at_once(
            *(
                lambda: actions.send_staff_message(
                    acting_user=world.subscriber,
                    conversation_id=world.conversation.pk,
                    body="Hi",
                    client_message_id="c-1",
                )
                for _ in range(senders)
            )
        )
    )

    assert len({message.pk for message in results}) == 1
    assert Message.objects.count() == 1


@pytest.mark.postgres
@requires_postgres
@pytest.mark.parametrize("senders", [8])
def test_simultaneous_first_patient_messages_with_one_client_message_id_make_one_thread(world, senders):
    results = no_exceptions(
        run_at_once(
            *(
                lambda: actions.send_patient_message(
                    acting_patient=world.other_patient, mailbox_id=world.billing.pk, body="Hi", client_message_id="p-1"
                )
                for _ in range(senders)
            )
        )
    )

    assert len({message.pk for message in results}) == 1
    assert Conversation.objects.filter(patient=world.other_patient).count() == 1
    assert Message.objects.filter(conversation__patient=world.other_patient).count() == 1


RACERS: dict[str, Callable[[Any, Mailbox], Any]] = {
    "staff starts from the chart": lambda w, mailbox: actions.start_conversation(
        acting_user=w.staff, mailbox_id=mailbox.pk, patient_id=w.other_patient.pk, via="CHART_SUMMARY"
    ),
    "patient writes first": lambda w, mailbox: actions.send_patient_message(
        acting_patient=w.other_patient, mailbox_id=mailbox.pk, body="Hello?"
    ),
}


@pytest.mark.parametrize("racer", RACERS.values(), ids=RACERS.keys())
@pytest.mark.postgres
@requires_postgres
def test_delete_racing_a_new_conversation_never_leaves_one_in_a_deleted_mailbox(world, racer):
    for round_number in range(10):
        mailbox = Mailbox.objects.create(practice=world.practice, name=f"Race {round_number}")

        deleted, started = run_at_once(
            lambda mailbox=mailbox: actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=mailbox.pk),
            lambda mailbox=mailbox: racer(world, mailbox),
        )

        mailbox_exists = Mailbox.objects.filter(pk=mailbox.pk).exists()
        conversations = Conversation.objects.filter(mailbox_id=mailbox.pk).count()
        if isinstance(deleted, BaseException):
            assert isinstance(deleted, DomainError), deleted
            assert deleted.code == ErrorCode.MAILBOX_NOT_EMPTY
            assert not isinstance(started, BaseException), started
            assert (mailbox_exists, conversations) == (True, 1)
            Message.objects.filter(conversation__mailbox=mailbox).delete()
            Conversation.objects.filter(mailbox=mailbox).delete()
        else:
            assert isinstance(started, DomainError), started
            assert started.code == ErrorCode.NOT_FOUND
            assert (mailbox_exists, conversations) == (False, 0)


def test_archive_and_reactivating_sends_racing_patient_sends_keep_the_mailbox_unread_count_exact(world):
    # given María's Billing conversation with one unread patient message, and John's with none yet
    from core.viewer_facts import annotate_mailboxes

    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="first")
    for round_number in range(4):
        # when, at once, a subscriber archives María's (or a staff send reactivates it), and both patients write
        archive_or_send = (
            (lambda: actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk))
            if round_number % 2 == 0
            else (
                lambda: actions.send_staff_message(
                    acting_user=world.mailbox_admin, conversation_id=world.conversation.pk, body="on it"
                )
            )
        )
        no_exceptions(
            run_at_once(
                archive_or_send,
                lambda: actions.send_patient_message(
                    acting_patient=world.other_patient, mailbox_id=world.billing.pk, body="from John"
                ),
                lambda: actions.send_patient_message(
                    acting_patient=world.patient, mailbox_id=world.billing.pk, body="from María"
                ),
            )
        )

        # then nothing deadlocked, and the mailbox count is the sum over its active conversations
        active = Conversation.objects.filter(mailbox=world.billing, status="ACTIVE")
        expected = sum(c.patient_message_count for c in active)
        mailbox = annotate_mailboxes(Mailbox.objects.filter(pk=world.billing.pk), world.subscriber).get()
        assert mailbox.unread_count == expected, round_number


def test_simultaneous_claims_leave_one_assignee_and_a_history_that_chains(world):
    # given two subscribers claiming, and a third reassigning, the same conversation at the same instant
    from core.models import AssignmentChange, MailboxSubscription

    MailboxSubscription.objects.create(mailbox=world.billing, user=world.clinician)
    people = (world.subscriber, world.mailbox_admin, world.clinician)
    no_exceptions(
        run_at_once(
            *(
                lambda user=user: actions.assign_conversation(
                    acting_user=user, conversation_id=world.conversation.pk, user_id=user.pk
                )
                for user in people
            )
        )
    )
    # then each change names the one before it (row lock), and the last one is the assignee
    changes = list(AssignmentChange.objects.filter(conversation=world.conversation).order_by("id"))
    assert len(changes) == 3
    assert changes[0].previous_assignee_id is None
    assert [c.previous_assignee_id for c in changes[1:]] == [c.assignee_id for c in changes[:-1]]
    assert Conversation.objects.get(pk=world.conversation.pk).assignee_id == changes[-1].assignee_id


def test_notes_and_messages_racing_keep_both_numberings_gap_free(world):
    # given staff notes, staff messages and patient messages written at the same instant
    calls = []
    for n in range(3):
        calls.append(
            lambda n=n: actions.add_internal_note(
                acting_user=world.subscriber, conversation_id=world.conversation.pk, body=f"note {n}"
            )
        )
        calls.append(
            lambda n=n: actions.send_staff_message(
                acting_user=world.mailbox_admin, conversation_id=world.conversation.pk, body=f"staff {n}"
            )
        )
        calls.append(
            lambda n=n: actions.send_patient_message(
                acting_patient=world.patient, mailbox_id=world.billing.pk, body=f"patient {n}"
            )
        )
    no_exceptions(run_at_once(*calls))
    # then the staff thread is 1..9 and the patient's numbering 1..6, both without gaps
    messages = Message.objects.filter(conversation=world.conversation)
    assert sorted(messages.values_list("sequence", flat=True)) == list(range(1, 10))
    portal = sorted(s for s in messages.values_list("portal_sequence", flat=True) if s is not None)
    assert portal == list(range(1, 7))
    conversation = Conversation.objects.get(pk=world.conversation.pk)
    assert (conversation.last_sequence, conversation.portal_last_sequence) == (9, 6)
