"""Token lifecycle over HTTP: expiry, idle timeout, revocation (manage.py revoke_tokens)."""

from __future__ import annotations

from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from core.models import ApiToken, AuditEvent
from core.tokens import INVALID_TOKEN_MESSAGE, hash_token, issue_token
from tests.graphql_client import Api

ME = "query { me { username } }"


def token_row(raw: str) -> ApiToken:
    return ApiToken.objects.get(key_hash=hash_token(raw))


def failure_reasons() -> list[str]:
    return [e.detail["reason"] for e in AuditEvent.objects.filter(operation="authenticate").order_by("pk")]


def test_expired_token_is_unauthenticated(world):
    raw = issue_token(user=world.staff, ttl=timedelta(hours=1))
    Api(raw).data(ME)
    ApiToken.objects.filter(pk=token_row(raw).pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    answer = Api(raw).post(ME)

    assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert answer["errors"][0]["message"] == INVALID_TOKEN_MESSAGE
    assert failure_reasons() == ["expired"]


def test_idle_token_is_logged_off_and_a_busy_one_is_not(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 15}
    idle, busy = issue_token(user=world.staff), issue_token(user=world.subscriber)
    now = timezone.now()
    ApiToken.objects.filter(pk=token_row(idle).pk).update(last_used_at=now - timedelta(minutes=16))
    ApiToken.objects.filter(pk=token_row(busy).pk).update(last_used_at=now - timedelta(minutes=14))

    idle_answer = Api(idle).post(ME)
    busy_answer = Api(busy).data(ME)

    assert idle_answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert idle_answer["errors"][0]["message"] == INVALID_TOKEN_MESSAGE
    assert busy_answer == {"me": {"username": world.subscriber.username}}
    assert token_row(busy).last_used_at > now - timedelta(minutes=1), "use refreshes the idle clock"
    assert failure_reasons() == ["idle"]


def test_token_never_used_goes_idle_from_its_creation(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 15}
    raw = issue_token(user=world.staff)
    ApiToken.objects.filter(pk=token_row(raw).pk).update(created_at=timezone.now() - timedelta(minutes=20))

    assert Api(raw).error_code(ME) == "UNAUTHENTICATED"


def test_revoked_tokens_are_unauthenticated_and_others_keep_working(world):
    first, second = issue_token(user=world.staff), issue_token(user=world.staff)
    other = issue_token(user=world.subscriber)
    Api(first).data(ME)

    call_command("revoke_tokens", "--user", world.staff.username, stdout=open("/dev/null", "w"))  # noqa: SIM115

    assert Api(first).error_code(ME) == "UNAUTHENTICATED"
    assert Api(second).error_code(ME) == "UNAUTHENTICATED"
    assert Api(other).data(ME) == {"me": {"username": world.subscriber.username}}
    assert failure_reasons() == ["revoked", "revoked"]


def test_revoked_patient_token_is_unauthenticated_on_the_portal(world):
    raw = issue_token(patient=world.patient)
    Api(raw).data("query { portalMailboxes { id } }")

    call_command(
        "revoke_tokens",
        "--patient",
        world.patient.account_number,
        "--practice",
        world.practice.key,
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )

    assert Api(raw).error_code("query { portalMailboxes { id } }") == "UNAUTHENTICATED"
    # A patient's failed token is filed under the patient's practice, still without an actor.
    event = AuditEvent.objects.get(operation="authenticate")
    assert (event.practice_id, event.actor_patient_id, event.detail["reason"]) == (world.practice.pk, None, "revoked")


def test_every_unusable_token_gets_one_answer_and_the_audit_keeps_the_reason(world, settings):
    # given a revoked, an expired, an idle and a disabled account's token, and one that never existed
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 15}
    revoked, expired, idle = (issue_token(user=world.staff) for _ in range(3))
    disabled = issue_token(user=world.subscriber)
    ApiToken.objects.filter(pk=token_row(revoked).pk).update(revoked_at=timezone.now())
    ApiToken.objects.filter(pk=token_row(expired).pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    ApiToken.objects.filter(pk=token_row(idle).pk).update(last_used_at=timezone.now() - timedelta(minutes=16))
    world.subscriber.is_active = False
    world.subscriber.save(update_fields=["is_active"])

    # when each is presented
    answers = [Api(raw).post(ME) for raw in ("pmm_never-issued", revoked, expired, idle, disabled)]

    # then the caller cannot tell them apart, and the audit trail can
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert answers[0]["errors"][0]["message"] == INVALID_TOKEN_MESSAGE
    assert failure_reasons() == ["unknown", "revoked", "expired", "idle", "disabled"]
