"""Guards of what the benchmarks (bench/) rely on: the reads behind a page are served by an index, with no sort of
the whole set, whatever the table size. PostgreSQL's EXPLAIN with sequential scans disabled tells whether an index
can serve a query; on a tiny test table the planner would otherwise rightly prefer a scan."""

from __future__ import annotations

import os

import pytest
from django.db import connection

from core.models import Conversation, ConversationStatus, Message, Patient
from core.viewer_facts import annotate_conversations

ON_POSTGRES = (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://"))
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL"),
]


def plan_of(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def sorts_rows_of(plan: str, table: str) -> bool:
    """Whether the plan sorts rows of `table` (a Sort node whose key names it), not counting sub-plans' own sorts."""
    return any("Sort Key:" in line and table in line for line in plan.splitlines())


@pytest.mark.django_db(transaction=False)
def test_account_number_lookup_is_served_by_the_account_index(world):
    # Given patients of a practice
    # When one is looked up by account number, the floor of the searchPatients benchmark
    plan = plan_of(Patient.objects.filter(practice=world.practice, search_account="a-1001"))
    # Then an index on the account column serves it, never a scan of the practice's patients
    assert "Index" in plan, plan
    assert "search_account" in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.django_db(transaction=False)
def test_a_mailbox_conversation_page_reads_the_recency_index_without_sorting(world):
    # Given the query of a page of a mailbox's conversations, most recent activity first
    page = (
        annotate_conversations(Conversation.objects.filter(status=ConversationStatus.ACTIVE), world.subscriber)
        .filter(mailbox=world.billing)
        .order_by("-last_activity_at", "-id")[:51]
    )
    # When PostgreSQL plans it
    plan = plan_of(page)
    # Then the (mailbox, status, last_activity_at, id) index yields the rows in order: no sort of the mailbox
    assert "conversation_mailbox_recent" in plan, plan
    assert not sorts_rows_of(plan, "last_activity_at"), plan


@pytest.mark.django_db(transaction=False)
def test_the_newest_messages_of_a_thread_come_from_the_sequence_index_without_sorting(world):
    # Given a thread of 300 messages, with statistics that know it: once autovacuum has analyzed a small
    # core_message during the suite, the planner rightly sorts a thread it believes has 2 rows
    Message.objects.bulk_create(
        Message(
            conversation=world.conversation,
            sequence=n,
            portal_sequence=n,
            direction="FROM_PATIENT",
            body=f"m{n}",
            sent_at=world.conversation.last_activity_at,
            sender_patient=world.patient,
        )
        for n in range(1, 301)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE core_message")
    # and the newest-first read of its messages (what `messages(last: 50)` needs)
    newest = Message.objects.filter(conversation=world.conversation).order_by("-sequence")[:51]
    # When PostgreSQL plans it
    plan = plan_of(newest)
    # Then the unique (conversation, sequence) index serves it backwards, whatever the thread length
    assert "message_unique_sequence" in plan, plan
    assert not sorts_rows_of(plan, "sequence"), plan
