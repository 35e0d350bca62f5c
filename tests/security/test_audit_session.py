"""A scripted workbench session by a signed-in browser (session cookie): each step leaves exactly the
expected audit records, in order, and nothing else."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from core import actions
from core.models import AuditEvent, Conversation
from tests.attachment_samples import pdf_bytes, upload
from tests.graphql_client import Api, gid


@pytest.fixture
def storage_dir(settings, tmp_path):
    location = tmp_path / "attachments"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    return location


def test_a_workbench_session_leaves_exactly_the_expected_trail(world, storage_dir):
    # Given: the patient wrote with a PDF (before the session), and South has a conversation of its own
    message = actions.send_patient_message(
        acting_patient=world.patient,
        mailbox_id=world.billing.pk,
        body="My bill",
        attachments=[upload("bill.pdf", pdf_bytes())],
    )
    attachment = message.attachments.get()
    south_thread = Conversation.objects.create(
        practice=world.other_practice,
        mailbox=world.outside_mailbox,
        patient=world.outside_patient,
        last_activity_at=timezone.now(),
    )
    browser = Client()
    assert browser.login(username=world.subscriber.username, password="correct-horse-battery")
    api = Api(client=browser)
    start = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    conversation_id = gid("Conversation", world.conversation.pk)

    # When: search, open from the mailbox, open from the chart, download, send, archive, probe South
    found = api.data(
        'query($p: ID!) { searchPatients(practiceId: $p, query: "garc") { id fullName } }',
        {"p": gid("Practice", world.practice.pk)},
    )["searchPatients"]
    listed = api.data(
        "query($m: ID!) { mailbox(id: $m) { conversations { edges { node { id } } } } }",
        {"m": gid("Mailbox", world.billing.pk)},
    )["mailbox"]["conversations"]["edges"]
    api.data("query($c: ID!) { conversation(id: $c) { messages(last: 20) { totalCount } } }", {"c": conversation_id})
    chart = api.data(
        "query($p: ID!) { patient(id: $p) { conversations { id messages(last: 20) { totalCount } } } }",
        {"p": found[0]["id"]},
    )["patient"]["conversations"]
    api.data(
        "query($c: ID!) { conversation(id: $c, via: CHART_SUMMARY) { messages(last: 20) { totalCount } } }",
        {"c": conversation_id},
    )
    download = browser.get(f"/attachments/{attachment.pk}/download?via=MAILBOX")
    b"".join(download.streaming_content)
    api.data('mutation($c: ID!) { sendMessage(conversationId: $c, body: "Fixed it") { id } }', {"c": conversation_id})
    api.data("mutation($c: ID!) { archiveConversation(conversationId: $c) { status } }", {"c": conversation_id})
    refused = api.error_code(
        "query($c: ID!) { conversation(id: $c) { id } }", {"c": gid("Conversation", south_thread.pk)}
    )

    # Then
    assert [p["fullName"] for p in found] == ["María García"]
    assert [edge["node"]["id"] for edge in listed] == [conversation_id] == [c["id"] for c in chart]
    assert download.status_code == 200
    assert refused == "NOT_FOUND"
    me, north, south = world.subscriber.pk, world.practice.pk, world.other_practice.pk
    patient, outside = world.patient.pk, world.outside_patient.pk
    trail = [
        (e.operation, e.action, e.outcome, e.via, e.actor_user_id, e.patient_id, e.practice_id)
        for e in AuditEvent.objects.filter(pk__gt=start or 0).order_by("pk")
    ]
    assert trail == [
        ("searchPatients", "EXECUTE", "SUCCESS", "", me, patient, north),
        ("mailbox.conversations", "READ", "SUCCESS", "MAILBOX", me, patient, north),
        ("conversation", "READ", "SUCCESS", "MAILBOX", me, patient, north),
        ("patient", "READ", "SUCCESS", "CHART_SUMMARY", me, patient, north),
        ("patient.conversations", "READ", "SUCCESS", "CHART_SUMMARY", me, patient, north),
        ("conversation", "READ", "SUCCESS", "CHART_SUMMARY", me, patient, north),
        ("downloadAttachment", "READ", "SUCCESS", "MAILBOX", me, patient, north),
        ("sendMessage", "CREATE", "SUCCESS", "MAILBOX", me, patient, north),
        ("archiveConversation", "UPDATE", "SUCCESS", "MAILBOX", me, patient, north),
        ("conversation", "READ", "NOT_FOUND", "", me, outside, south),
        ("conversation", "READ", "NOT_FOUND", "", me, None, north),  # the copy for the prober's practice
    ]
    events = AuditEvent.objects.filter(pk__gt=start or 0)
    assert {e.ip for e in events} == {"127.0.0.1"}
    assert all(e.request_id for e in events)
    assert AuditEvent.objects.get(operation="searchPatients", pk__gt=start or 0).query == "garc"
    listing = AuditEvent.objects.get(operation="mailbox.conversations", pk__gt=start or 0)
    assert listing.detail == {"conversation_ids": [world.conversation.pk], "mailbox_ids": [world.billing.pk]}
    assert (listing.object_type, listing.object_id) == ("Conversation", str(world.conversation.pk))
