"""Every read of a patient's data is findable by that patient: a mailbox list showing several patients'
conversations and messages, and a patient search, leave one audit row per patient shown, written in one
INSERT whatever the page size."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import AuditEvent, Conversation, Message, MessageDirection
from tests.conftest import make_patient
from tests.graphql_client import Api, gid

LIST_WITH_MESSAGES = """
query($m: ID!) { mailbox(id: $m) { conversations(first: 100) { edges { node {
  id patient { fullName } messages(last: 5) { edges { node { body } } } } } } } }
"""
TRAIL = """
query($p: ID!, $patient: ID) { auditEvents(practiceId: $p, patientId: $patient, first: 100) {
  edges { node { operation action outcome via actorUser { username } patient { accountNumber } } } } }
"""


def thread_with(world, patient, body: str) -> Conversation:
    now = timezone.now()
    conversation = Conversation.objects.create(
        practice=world.practice,
        mailbox=world.billing,
        patient=patient,
        last_activity_at=now,
        last_sequence=1,
        portal_last_sequence=1,
    )
    Message.objects.create(
        conversation=conversation,
        sequence=1,
        portal_sequence=1,
        direction=MessageDirection.FROM_PATIENT,
        sender_patient=patient,
        body=body,
        sent_at=now,
    )
    return conversation


def test_a_mailbox_list_with_messages_is_found_in_each_patients_trail(world):
    # given Billing holding the threads of three patients (María's, already there, has no messages)
    third = make_patient(world.practice, "A-1003", "Ana", "Lima")
    thread_with(world, world.other_patient, "John's question")
    thread_with(world, third, "Ana's question")

    # when a subscriber lists Billing with every thread's messages
    listed = Api.as_user(world.subscriber).data(LIST_WITH_MESSAGES, {"m": gid("Mailbox", world.billing.pk)})
    bodies = {
        e["node"]["patient"]["fullName"]: [m["node"]["body"] for m in e["node"]["messages"]["edges"]]
        for e in listed["mailbox"]["conversations"]["edges"]
    }
    assert bodies == {"María García": [], "John Smith": ["John's question"], "Ana Lima": ["Ana's question"]}

    # then the owner finds that read under each patient
    owner = Api.as_user(world.owner)
    for patient in (world.patient, world.other_patient, third):
        trail = owner.data(TRAIL, {"p": gid("Practice", world.practice.pk), "patient": gid("Patient", patient.pk)})
        reads = [e["node"] for e in trail["auditEvents"]["edges"] if e["node"]["operation"] == "mailbox.conversations"]
        assert reads == [
            {
                "operation": "mailbox.conversations",
                "action": "READ",
                "outcome": "SUCCESS",
                "via": "MAILBOX",
                "actorUser": {"username": "sam_subscriber"},
                "patient": {"accountNumber": patient.account_number},
            }
        ], patient.account_number
    assert not AuditEvent.objects.filter(operation="mailbox.conversations", patient__isnull=True).exists()


def test_another_practice_finds_none_of_these_reads(world):
    thread_with(world, world.other_patient, "John's question")
    Api.as_user(world.subscriber).data(LIST_WITH_MESSAGES, {"m": gid("Mailbox", world.billing.pk)})

    outsider = Api.as_user(world.outsider)
    south = gid("Practice", world.other_practice.pk)
    assert outsider.data(TRAIL, {"p": south, "patient": gid("Patient", world.patient.pk)})["auditEvents"]["edges"] == []
    assert outsider.error_code(TRAIL, {"p": gid("Practice", world.practice.pk)}) == "NOT_FOUND"


def _list_queries(world, patients: int) -> tuple[int, int]:
    for n in range(patients - 1):  # plus María's conversation
        thread_with(world, make_patient(world.practice, f"P-{patients}-{n}", f"First{n}", f"Last{n}"), f"hi {n}")
    api = Api.as_user(world.subscriber)
    api.post("{ __typename }")
    before = AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as captured:
        api.data(LIST_WITH_MESSAGES, {"m": gid("Mailbox", world.billing.pk)})
    inserts = [q for q in captured.captured_queries if q["sql"].startswith('INSERT INTO "core_auditevent"')]
    assert len(inserts) == 1
    return len(captured.captured_queries), AuditEvent.objects.count() - before


def test_one_insert_writes_the_rows_of_a_hundred_patients(world):
    few = _list_queries(world, 3)
    Conversation.objects.filter(mailbox=world.billing).exclude(pk=world.conversation.pk).delete()
    many = _list_queries(world, 100)
    assert (few[1], many[1]) == (3, 100)
    assert few[0] == many[0], f"{few[0]} queries for 3 patients, {many[0]} for 100"


def test_a_patient_search_is_found_in_the_trail_of_each_patient_it_showed(world):
    make_patient(world.practice, "A-1004", "Mario", "Garcés")
    found = Api.as_user(world.subscriber).data(
        'query($p: ID!) { searchPatients(practiceId: $p, query: "gar") { accountNumber } }',
        {"p": gid("Practice", world.practice.pk)},
    )["searchPatients"]
    assert sorted(p["accountNumber"] for p in found) == ["A-1001", "A-1004"]

    searches = AuditEvent.objects.filter(operation="searchPatients").order_by("patient__account_number")
    assert [(e.patient.account_number, e.query, e.detail) for e in searches] == [
        ("A-1001", "gar", {"results": 2}),
        ("A-1004", "gar", {"results": 2}),
    ]


def test_a_search_that_finds_nobody_still_leaves_its_row(world):
    Api.as_user(world.subscriber).data(
        'query($p: ID!) { searchPatients(practiceId: $p, query: "zzz") { id } }',
        {"p": gid("Practice", world.practice.pk)},
    )
    [search] = AuditEvent.objects.filter(operation="searchPatients")
    assert (search.patient_id, search.query, search.detail) == (None, "zzz", {"results": 0})
