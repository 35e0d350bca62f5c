"""The audit trail over HTTP: one record per PHI read, search, send and admin change; refusals and token
failures recorded with who asked for what; append-only down to the database."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.db import connection

from core.models import AuditEvent, Message, PracticeSetting
from core.tokens import issue_token
from tests.graphql_client import Api, gid

needs_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs DATABASE_URL (PostgreSQL)"
)


def new_events(since_id: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__gt=since_id).order_by("pk"))


def last_id() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def test_opening_a_conversation_records_who_what_when_and_from_where(world):
    api = Api.as_user(world.subscriber)
    before = last_id()

    api.post(
        "query($id: ID!) { conversation(id: $id) { messages(last: 5) { totalCount } } }",
        {"id": gid("Conversation", world.conversation.pk)},
        **{"X-Request-ID": "req-123"},  # passed through, so a support ticket can be matched with the trail
    )

    [event] = new_events(before)
    assert (event.operation, event.action, event.outcome, event.via) == ("conversation", "READ", "SUCCESS", "MAILBOX")
    assert event.actor_user_id == world.subscriber.pk
    assert event.actor_patient_id is None
    assert (event.object_type, event.object_id) == ("Conversation", str(world.conversation.pk))
    assert event.patient_id == world.patient.pk
    assert event.practice_id == world.practice.pk
    assert event.ip == "127.0.0.1"
    assert event.request_id == "req-123"
    assert event.created_at is not None


def test_each_phi_read_search_send_and_admin_change_leaves_one_record(world):
    staff, patient = Api.as_user(world.subscriber), Api.as_patient(world.patient)
    owner = Api.as_user(world.owner)
    steps = [
        (
            patient,
            'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "hi") { id } }',
            {"m": gid("Mailbox", world.billing.pk)},
            ("sendPortalMessage", "CREATE", "PORTAL"),
        ),
        (patient, "query { portalConversations { id } }", {}, ("portalConversations", "READ", "PORTAL")),
        (
            staff,
            "query($id: ID!) { mailbox(id: $id) { conversations { totalCount } } }",
            {"id": gid("Mailbox", world.billing.pk)},
            ("mailbox.conversations", "READ", "MAILBOX"),
        ),
        (
            staff,
            "query($id: ID!) { patient(id: $id) { id } }",
            {"id": gid("Patient", world.patient.pk)},
            ("patient", "READ", "CHART_SUMMARY"),
        ),
        (
            staff,
            'query($p: ID!) { searchPatients(practiceId: $p, query: "garc") { id } }',
            {"p": gid("Practice", world.practice.pk)},
            ("searchPatients", "EXECUTE", ""),
        ),
        (
            staff,
            'mutation($c: ID!) { sendMessage(conversationId: $c, body: "ok", via: CHART_SUMMARY) { id } }',
            {"c": gid("Conversation", world.conversation.pk)},
            ("sendMessage", "CREATE", "CHART_SUMMARY"),
        ),
        (
            owner,
            'mutation($p: ID!) { setPracticeSetting(practiceId: $p, key: "x.y", value: "T") { key } }',
            {"p": gid("Practice", world.practice.pk)},
            ("setPracticeSetting", "UPDATE", "ADMIN"),
        ),
    ]
    for api, query, variables, expected in steps:
        before = last_id()
        api.data(query, variables)
        assert [(e.operation, e.action, e.via) for e in new_events(before)] == [expected], query

    search = AuditEvent.objects.get(operation="searchPatients")
    assert search.query == "garc"
    assert search.detail == {"results": 1}


def test_chart_summary_read_of_a_patients_conversations_is_recorded(world):
    api = Api.as_user(world.staff)  # not subscribed: the chart is the way in
    before = last_id()

    api.data(
        "query($id: ID!) { patient(id: $id) { conversations { messages(last: 5) { totalCount } } } }",
        {"id": gid("Patient", world.patient.pk)},
    )

    assert [(e.operation, e.via, e.patient_id) for e in new_events(before)] == [
        ("patient", "CHART_SUMMARY", world.patient.pk),
        ("patient.conversations", "CHART_SUMMARY", world.patient.pk),
    ]


def test_refused_cross_practice_read_is_recorded_for_the_practice_it_probed(world):
    api = Api.as_user(world.outsider)
    before = last_id()

    code = api.error_code(
        "query($id: ID!) { conversation(id: $id) { id } }", {"id": gid("Conversation", world.conversation.pk)}
    )

    assert code == "NOT_FOUND"
    # filed under North, whose record it was, and (naming no record) under South, the outsider's practice
    event, own = new_events(before)
    assert (own.practice_id, own.object_type, own.object_id, own.patient_id) == (world.other_practice.pk, "", "", None)
    assert (own.operation, own.outcome, own.actor_user_id, own.detail) == (
        "conversation",
        "NOT_FOUND",
        world.outsider.pk,
        event.detail,
    )
    assert (event.operation, event.action, event.outcome) == ("conversation", "READ", "NOT_FOUND")
    assert event.actor_user_id == world.outsider.pk
    assert (event.object_type, event.object_id) == ("Conversation", str(world.conversation.pk))
    assert event.practice_id == world.practice.pk
    assert event.patient_id == world.patient.pk
    assert event.detail["arguments"] == {"id": gid("Conversation", world.conversation.pk)}
    assert event.ip == "127.0.0.1"
    assert event.request_id


def test_refused_send_is_recorded_although_the_send_rolled_back(world):
    api = Api.as_user(world.staff)  # a member, but not subscribed to Billing
    before = last_id()

    code = api.error_code(
        'mutation($c: ID!) { sendMessage(conversationId: $c, body: "secret text") { id } }',
        {"c": gid("Conversation", world.conversation.pk)},
    )

    assert code == "NOT_SUBSCRIBED"
    assert not Message.objects.exists()
    [event] = new_events(before)
    assert (event.operation, event.action, event.outcome) == ("sendMessage", "CREATE", "NOT_SUBSCRIBED")
    assert event.actor_user_id == world.staff.pk
    assert event.object_id == str(world.conversation.pk)
    assert "secret text" not in str(event.detail), "message content never goes into the trail"


def test_forbidden_admin_change_and_disabled_feature_are_recorded(world):
    PracticeSetting.objects.filter(practice=world.other_practice).update(value="F")
    staff, outsider = Api.as_user(world.staff), Api.as_user(world.outsider)
    before = last_id()

    assert (
        staff.error_code(
            'mutation($p: ID!) { setPracticeSetting(practiceId: $p, key: "a", value: "b") { key } }',
            {"p": gid("Practice", world.practice.pk)},
        )
        == "FORBIDDEN"
    )
    assert (
        outsider.error_code(
            "query($p: ID!) { mailboxes(practiceId: $p) { id } }", {"p": gid("Practice", world.other_practice.pk)}
        )
        == "FEATURE_DISABLED"
    )

    assert [(e.operation, e.action, e.outcome, e.actor_user_id, e.practice_id) for e in new_events(before)] == [
        ("setPracticeSetting", "UPDATE", "FORBIDDEN", world.staff.pk, world.practice.pk),
        ("mailboxes", "READ", "FEATURE_DISABLED", world.outsider.pk, world.other_practice.pk),
    ]


def test_patient_asking_for_another_patients_thread_is_recorded_with_the_patient_as_actor(world):
    api = Api.as_patient(world.other_patient)
    before = last_id()

    code = api.error_code(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "x") { id } }',
        {"m": gid("Mailbox", world.outside_mailbox.pk)},
    )

    assert code == "NOT_FOUND"
    event, own = new_events(before)
    assert (own.practice_id, own.actor_patient_id, own.object_id, own.patient_id) == (
        world.practice.pk,
        world.other_patient.pk,
        "",
        None,
    )
    assert (event.actor_patient_id, event.actor_user_id, event.via, event.outcome) == (
        world.other_patient.pk,
        None,
        "PORTAL",
        "NOT_FOUND",
    )
    assert event.practice_id == world.other_practice.pk


def test_failed_token_is_recorded_with_the_ip_and_no_actor(world):
    before = last_id()

    assert Api("pmm_not-a-real-token").error_code("query { me { id } }") == "UNAUTHENTICATED"

    [event] = new_events(before)
    assert (event.operation, event.action, event.outcome) == ("authenticate", "EXECUTE", "UNAUTHENTICATED")
    assert event.actor_user_id is None
    assert event.actor_patient_id is None
    assert event.ip == "127.0.0.1"
    assert event.detail == {"reason": "unknown"}


def test_anonymous_request_without_token_leaves_no_record(world):
    before = last_id()

    assert Api().error_code("query { me { id } }") == "UNAUTHENTICATED"

    assert new_events(before) == []


def test_audit_events_refuse_update_and_delete_in_python(world):
    Api.as_user(world.subscriber).data(
        "query($id: ID!) { conversation(id: $id) { id } }", {"id": gid("Conversation", world.conversation.pk)}
    )
    event = AuditEvent.objects.get()

    event.outcome = "TAMPERED"
    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()


@needs_postgres
def test_postgres_refuses_update_and_delete_of_audit_rows_even_in_raw_sql(world):
    from django.db import DatabaseError, transaction

    issue_token(user=world.owner)
    Api.as_user(world.subscriber).data(
        "query($id: ID!) { conversation(id: $id) { id } }", {"id": gid("Conversation", world.conversation.pk)}
    )
    event_id = AuditEvent.objects.get().pk

    for statement in (
        "UPDATE core_auditevent SET outcome = 'TAMPERED' WHERE id = %s",
        "DELETE FROM core_auditevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [event_id])
    assert AuditEvent.objects.get(pk=event_id).outcome == "SUCCESS"


@needs_postgres
def test_send_fails_and_leaves_no_message_when_the_audit_write_fails(world):
    api = Api.as_user(world.subscriber)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.refuse_audit() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'audit storage unavailable'; END; $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_refuse_audit BEFORE INSERT ON core_auditevent
                FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_audit();
            """
        )

    answer = api.post(
        'mutation($c: ID!) { sendMessage(conversationId: $c, body: "hello") { id } }',
        {"c": gid("Conversation", world.conversation.pk)},
    )

    assert answer["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "audit storage" not in str(answer), "the database error is masked"
    assert not Message.objects.exists()
    world.conversation.refresh_from_db()
    assert world.conversation.last_sequence == 0


def test_messages_shown_in_a_mutation_answer_are_recorded_as_read(world):
    api = Api.as_user(world.subscriber)
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    before = last_id()

    api.data("mutation($c: ID!) { archiveConversation(conversationId: $c) { status } }", conversation)
    api.data(
        "mutation($c: ID!) { markConversationRead(conversationId: $c) { messages(last: 5) { totalCount } } }",
        conversation,
    )

    assert [(e.operation, e.action, e.via, e.patient_id) for e in new_events(before)] == [
        ("archiveConversation", "UPDATE", "MAILBOX", world.patient.pk),
        ("markConversationRead.messages", "READ", "MAILBOX", world.patient.pk),
    ]


def test_many_audit_rows_at_once_are_all_written_with_their_ids(world):
    from core import audit
    from core.models import AuditAction

    # more rows than one statement's parameters hold on SQLite (999), so the write takes several statements
    rows = audit.record_many(
        {"operation": "test.many", "action": AuditAction.READ, "practice": world.practice, "patient": world.patient}
        for _ in range(150)
    )
    written = list(AuditEvent.objects.filter(operation="test.many").order_by("pk").values_list("pk", flat=True))
    assert len(written) == 150
    assert sorted(row.pk for row in rows) == written
    assert all(not row._state.adding for row in rows)
    stored = dict(AuditEvent.objects.filter(operation="test.many").values_list("pk", "created_at"))
    assert all(row.created_at == stored[row.pk] for row in rows)  # the instances say what was written


def test_what_a_trail_names_cannot_be_deleted(world):
    # given a read of a patient's conversation, recorded with the practice, the reader and the patient
    from django.db.models import ProtectedError

    Api.as_user(world.subscriber).data(
        "query($id: ID!) { conversation(id: $id) { id } }", {"id": gid("Conversation", world.conversation.pk)}
    )
    event = AuditEvent.objects.get()

    # when the reader's account or the practice is deleted, then Django refuses, and the trail keeps its row
    for row in (world.subscriber, world.practice):
        with pytest.raises(ProtectedError) as refused:
            row.delete()
        assert event in refused.value.protected_objects
    assert AuditEvent.objects.get().actor_user_id == world.subscriber.pk
    # and so for a patient the trail names and nothing else does
    from core import audit
    from core.models import AuditAction, Patient

    patient = Patient.objects.create(
        practice=world.practice, account_number="N-99", first_name="A", last_name="B", date_of_birth=dt.date(1990, 1, 1)
    )
    audit.record(operation="test.read", action=AuditAction.READ, practice=world.practice, patient=patient)
    with pytest.raises(ProtectedError):
        patient.delete()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_audited_read_does_not_wait_behind_a_lock_on_the_rows_its_trail_names(world):
    import time

    import psycopg

    # given another session holding the practice, the reader's account and the patient FOR UPDATE (a change in
    # progress, as the portal's notification setting locks its patient)
    api = Api.as_user(world.subscriber)
    db = connection.settings_dict
    with psycopg.connect(dbname=db["NAME"], host=db["HOST"], port=db["PORT"], user=db["USER"]) as other:
        other.execute("SELECT 1 FROM core_practice WHERE id = %s FOR UPDATE", [world.practice.pk])
        other.execute("SELECT 1 FROM core_user WHERE id = %s FOR UPDATE", [world.subscriber.pk])
        other.execute("SELECT 1 FROM core_patient WHERE id = %s FOR UPDATE", [world.patient.pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")
        try:
            # when the subscriber reads the patient's conversation
            started = time.monotonic()
            answer = api.post(
                "query($id: ID!) { conversation(id: $id) { id } }", {"id": gid("Conversation", world.conversation.pk)}
            )
            waited = time.monotonic() - started
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")

    # then it is answered without waiting for that session (a key-share check of the trail's references would
    # have waited for it, here until the lock timeout), and its row is in the trail
    assert "errors" not in answer, answer
    assert waited < 2, waited
    [event] = AuditEvent.objects.filter(operation="conversation")
    assert (event.practice_id, event.actor_user_id, event.patient_id) == (
        world.practice.pk,
        world.subscriber.pk,
        world.patient.pk,
    )
