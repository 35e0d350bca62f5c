"""core.prepared: a queryset compiled once answers each call exactly as the ORM builds and runs it (both databases)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count, F, TextField, Value
from django.db.models.functions import Concat
from django.test.utils import CaptureQueriesContext

from core import actions, sql
from core.models import Conversation, Message
from core.prepared import Prepared, Variants

pytestmark = pytest.mark.django_db


def messages_of(conversation_id, ranges_condition: str, viewer_id):
    """The ORM's own answer: messages with senders joined, annotations (one of a value: PostgreSQL's driver wraps
    it in a type of its own), a raw condition, ordered."""
    return (
        Message.objects.select_related("sender_user", "sender_patient", "retracted_by")
        .annotate(label=Concat(F("direction"), Value(":"), F("body"), output_field=TextField()))
        .annotate(viewer=Value(viewer_id))
        .filter(conversation_id=conversation_id)
        .filter(sql.condition(ranges_condition))
        .order_by("-sequence")
    )


PAGE = Prepared(
    lambda prepared: messages_of(prepared.value("conversation"), prepared.text("ranges"), prepared.value("viewer")),
)


def as_seen(message: Message) -> dict:
    """Every column, the annotation, and the related rows the select joined (cached on the instance)."""
    return {
        "columns": {field.attname: getattr(message, field.attname) for field in Message._meta.concrete_fields},
        "label": message.label,
        "viewer": message.viewer,
        "sender_user": message.sender_user and message.sender_user.__dict__.keys() - {"_state"},
        "sender_user_name": message.sender_user and message.sender_user.display_name(),
        "sender_patient": message.sender_patient and message.sender_patient.full_name,
        "cached": sorted(message._state.fields_cache),
        "adding": message._state.adding,
        "db": message._state.db,
    }


@pytest.fixture
def thread(world):
    for i in range(4):
        actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body=f"question {i}")
        actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body=f"a{i}")
    return world.conversation


def test_rows_are_the_orm_rows_with_each_calls_values(world, thread):
    seq = sql.column(Message, "sequence")
    for condition in (f"{seq} BETWEEN 2 AND 6", f"{seq} IN (1, 8)", f"{seq} > 100"):
        expected = [as_seen(m) for m in messages_of(thread.pk, condition, world.subscriber.pk)]
        values = {"conversation": thread.pk, "viewer": world.subscriber.pk}
        found = [as_seen(m) for m in PAGE.rows(values=values, texts={"ranges": condition})]
        assert found == expected
    # datetimes come back as the ORM converts them (aware, on SQLite too)
    [newest] = PAGE.rows(values={"conversation": thread.pk, "viewer": 1}, texts={"ranges": f"{seq} = 8"})
    assert newest.sent_at.tzinfo is not None
    assert newest.sent_at == Message.objects.get(conversation=thread, sequence=8).sent_at


def test_another_conversations_value_reads_its_rows_only(world, thread):
    other = Conversation.objects.create(
        practice=world.practice,
        mailbox=world.scheduling,
        patient=world.other_patient,
        last_activity_at=thread.created_at,
    )
    assert PAGE.rows(values={"conversation": other.pk, "viewer": 1}, texts={"ranges": "TRUE"}) == []
    assert len(PAGE.rows(values={"conversation": thread.pk, "viewer": 1}, texts={"ranges": "TRUE"})) == 8


def test_one_statement_per_call_after_the_first(world, thread):
    PAGE.rows(values={"conversation": thread.pk, "viewer": 1}, texts={"ranges": "TRUE"})
    with CaptureQueriesContext(connection) as queries:
        PAGE.rows(values={"conversation": thread.pk, "viewer": 1}, texts={"ranges": "TRUE"})
    assert len(queries) == 1
    assert "prepared:" not in queries[0]["sql"]


def test_text_with_a_percent_sign_is_refused(world, thread):
    with pytest.raises(ValueError, match="no %"):
        PAGE.rows(values={"conversation": thread.pk, "viewer": 1}, texts={"ranges": "body LIKE '%x'"})


def test_a_builder_that_drops_a_text_is_refused_when_compiled(world):
    unused = Prepared(lambda prepared: (prepared.text("ranges"), Message.objects.all())[1])
    with pytest.raises(ValueError, match="ranges"):
        unused.rows(texts={"ranges": "TRUE"})


def test_a_value_a_shape_leaves_out_is_not_needed(world, thread):
    by_need = Variants(
        lambda prepared, mine: Message.objects.filter(
            conversation_id=prepared.value("c"), **({"sender_user_id": prepared.value("me")} if mine else {})
        )
    )
    assert len(by_need[False].rows(values={"c": thread.pk})) == 8
    assert len(by_need[True].rows(values={"c": thread.pk, "me": world.subscriber.pk})) == 4
    with pytest.raises(KeyError):
        by_need[True].rows(values={"c": thread.pk})


def test_only_model_rows_are_prepared(world):
    values = Prepared(lambda prepared: Message.objects.filter(pk=prepared.value("id")).values("body"))
    with pytest.raises(TypeError):
        values.rows(values={"id": 1})


def test_variants_compile_one_statement_per_shape(world, thread):
    by_direction = Variants(
        lambda prepared, newest_first: (
            Message.objects.filter(conversation_id=prepared.value("c"))
            .annotate(n=Count("attachments"))
            .order_by("-sequence" if newest_first else "sequence")
        )
    )
    newest_first = [m.sequence for m in by_direction[True].rows(values={"c": thread.pk})]
    oldest_first = [m.sequence for m in by_direction[False].rows(values={"c": thread.pk})]
    assert newest_first == list(range(8, 0, -1))
    assert oldest_first == list(range(1, 9))
    assert by_direction[True] is by_direction[True]


def test_variants_keep_a_bounded_number_of_shapes(world, thread):
    by_size = Variants(
        lambda prepared, size: Message.objects.filter(conversation_id=prepared.value("c"))[:size], shapes=3
    )
    sizes = [len(by_size[size].rows(values={"c": thread.pk})) for size in range(1, 7)]
    assert sizes == [1, 2, 3, 4, 5, 6]
    assert len(by_size._shapes) == 3


def test_a_statement_of_any_queryset_runs_inside_the_callers(world, thread):
    # given a prepared values_list (rows of it are refused: not model rows)
    senders = Prepared(
        lambda prepared: Message.objects.filter(
            conversation_id=prepared.value("c"), sender_user__isnull=False
        ).values_list("pk", flat=True)
    )
    sql_text, params = senders.statement(values={"c": thread.pk})
    # when the caller runs it inside its own statement
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sql_text}) inner_ids", params)
        [(count,)] = cursor.fetchall()
    # then it counts what the ORM finds
    assert count == Message.objects.filter(conversation=thread, sender_user__isnull=False).count() == 4
    with pytest.raises(TypeError):
        senders.rows(values={"c": thread.pk})
