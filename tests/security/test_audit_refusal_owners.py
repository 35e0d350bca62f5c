"""Refusals have an owner who can read them: the caller's own practice gets a copy naming no record (the same
whether the record exists in another practice or not), a known token's failures go to its owner's practices,
and what is left unowned (unknown tokens) is reported by `manage.py audit_refusals`."""

from __future__ import annotations

import json
from io import StringIO

from django.core.management import call_command

from core.models import AuditEvent
from core.tokens import issue_token, revoke_tokens
from tests.graphql_client import Api, gid

TRAIL = """
query($p: ID!) { auditEvents(practiceId: $p, first: 50) {
  edges { node { operation outcome objectType objectId actorUser { username } actorPatient { fullName }
                 patient { fullName } } } } }
"""
OPEN = "query($id: ID!) { conversation(id: $id) { id } }"


def trail(admin, practice) -> list[dict]:
    edges = Api.as_user(admin).data(TRAIL, {"p": gid("Practice", practice.pk)})["auditEvents"]["edges"]
    return [e["node"] for e in edges]


def test_a_staff_probe_of_an_unknown_id_is_filed_under_their_practice(world):
    code = Api.as_user(world.staff).error_code(OPEN, {"id": gid("Conversation", 999_999)})

    assert code == "NOT_FOUND"
    assert not AuditEvent.objects.filter(practice__isnull=True).exists()
    assert trail(world.owner, world.practice) == [
        {
            "operation": "conversation",
            "outcome": "NOT_FOUND",
            "objectType": "",
            "objectId": "",
            "actorUser": {"username": "stan_staff"},
            "actorPatient": None,
            "patient": None,
        }
    ]


def test_the_probers_practice_cannot_tell_an_existing_record_of_another_practice_from_an_unknown_one(world):
    outsider = Api.as_user(world.outsider)  # South's owner
    assert outsider.error_code(OPEN, {"id": gid("Conversation", world.conversation.pk)}) == "NOT_FOUND"  # North's
    assert outsider.error_code(OPEN, {"id": gid("Conversation", 999_999)}) == "NOT_FOUND"  # nobody's

    south = [e for e in trail(world.outsider, world.other_practice) if e["operation"] == "conversation"]
    assert south == [south[0], south[0]]  # the two look alike: no record, no patient
    assert (south[0]["objectId"], south[0]["patient"]) == ("", None)
    assert [
        (e.detail["arguments"]["id"]) for e in AuditEvent.objects.filter(practice=world.other_practice).order_by("pk")
    ] == [
        gid("Conversation", world.conversation.pk),
        gid("Conversation", 999_999),
    ]
    # North, whose record was probed, sees that probe with its record (and not the prober's name)
    north = [e for e in trail(world.owner, world.practice) if e["operation"] == "conversation"]
    assert north == [
        {
            "operation": "conversation",
            "outcome": "NOT_FOUND",
            "objectType": "Conversation",
            "objectId": str(world.conversation.pk),
            "actorUser": None,
            "actorPatient": None,
            "patient": {"fullName": "María García"},
        }
    ]


def test_a_cross_practice_probe_is_audited_without_revealing_who_probed(world):
    # given an outsider probing one of this practice's conversations
    outsider = Api.as_user(world.outsider)
    probe = "query($id: ID!) { conversation(id: $id) { id } }"
    assert outsider.error_code(probe, {"id": gid("Conversation", world.conversation.pk)}) == "NOT_FOUND"
    # when this practice's owner reads the audit trail
    trail = Api.as_user(world.owner).data(
        "query($p: ID!) { auditEvents(practiceId: $p, first: 50) {"
        " edges { node { outcome actorUser { username } } } } }",
        {"p": gid("Practice", world.practice.pk)},
    )
    # then the refusal is there, but the other practice's user is not named
    refusals = [e["node"] for e in trail["auditEvents"]["edges"] if e["node"]["outcome"] == "NOT_FOUND"]
    assert refusals
    assert all(r["actorUser"] is None for r in refusals)
    assert "oscar" not in str(trail)


def test_a_patient_asking_for_an_unknown_thread_is_filed_under_their_practice(world):
    code = Api.as_patient(world.patient).error_code(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "hello") { id } }', {"m": gid("Mailbox", 424_242)}
    )

    assert code == "NOT_FOUND"
    [event] = AuditEvent.objects.all()
    assert (event.practice_id, event.actor_patient_id, event.outcome) == (
        world.practice.pk,
        world.patient.pk,
        "NOT_FOUND",
    )
    assert "body" not in event.detail["arguments"]
    assert [e["actorPatient"] for e in trail(world.owner, world.practice)] == [{"fullName": "María García"}]


def test_a_revoked_staff_token_is_filed_under_each_practice_of_its_owner(world):
    token = issue_token(user=world.staff)
    revoke_tokens(user=world.staff)

    assert Api(token).error_code("{ me { id } }") == "UNAUTHENTICATED"

    failures = AuditEvent.objects.filter(operation="authenticate")
    assert [(e.practice_id, e.detail["reason"]) for e in failures] == [(world.practice.pk, "revoked")]
    assert [e["outcome"] for e in trail(world.owner, world.practice)] == ["UNAUTHENTICATED"]
    assert trail(world.outsider, world.other_practice) == []


def test_audit_refusals_reports_what_no_practice_owns(world):
    assert Api("pmm_unknown-token").error_code("{ me { id } }") == "UNAUTHENTICATED"
    Api.as_user(world.staff).error_code(OPEN, {"id": gid("Conversation", 999_999)})  # owned by North: not listed

    text, lines = StringIO(), StringIO()
    call_command("audit_refusals", stdout=text)
    call_command("audit_refusals", "--json", stdout=lines)

    report = text.getvalue()
    assert report.startswith("1 refusals with no practice since ")
    assert "by outcome: UNAUTHENTICATED 1" in report
    assert "by IP: 127.0.0.1 1" in report
    assert "authenticate" in report
    assert '"reason":"unknown"' in report
    [row] = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert (row["operation"], row["outcome"], row["actor"], row["ip"], row["detail"]) == (
        "authenticate",
        "UNAUTHENTICATED",
        "-",
        "127.0.0.1",
        {"reason": "unknown"},
    )


def test_audit_refusals_looks_back_as_far_as_asked(world):
    assert Api("pmm_unknown-token").error_code("{ me { id } }") == "UNAUTHENTICATED"

    recent, week = StringIO(), StringIO()
    call_command("audit_refusals", "--days", "0", stdout=recent)
    call_command("audit_refusals", stdout=week)
    assert recent.getvalue().startswith("0 refusals")
    assert week.getvalue().startswith("1 refusals")
