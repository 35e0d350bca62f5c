"""The token and demo management commands."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from core import actions
from core.demo import DEMO_PASSWORD
from core.errors import DomainError, ErrorCode
from core.models import (
    ApiToken,
    AuditEvent,
    Conversation,
    ConversationStatus,
    Event,
    Mailbox,
    MailboxSubscription,
    Membership,
    Message,
    Patient,
    PermissionGrant,
    Practice,
    PracticeSetting,
    User,
)
from core.tokens import authenticate_token, revoke_tokens

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_issue_token_prints_only_a_token_that_authenticates_the_user(world):
    output = run("issue_token", "--user", world.subscriber.username)

    token = output.strip()
    assert output == token + "\n"
    assert re.fullmatch(r"pmm_[A-Za-z0-9_-]{40,}", token)
    owner = authenticate_token(token)
    assert (owner.user, owner.patient) == (world.subscriber, None)


def test_issue_token_for_a_patient_needs_the_practice(world):
    token = run("issue_token", "--patient", "A-1001", "--practice", "south").strip()

    assert authenticate_token(token).patient == world.outside_patient


def test_issue_token_ttl_sets_the_expiry(world):
    token = run("issue_token", "--user", world.staff.username, "--ttl-hours", "2").strip()

    expires_at = ApiToken.objects.get().expires_at
    assert timedelta(hours=1, minutes=59) < expires_at - timezone.now() <= timedelta(hours=2)
    assert authenticate_token(token).user == world.staff


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--user", "nobody"], "No user named 'nobody'"),
        (["--patient", "A-9999", "--practice", "north"], "No patient with account number 'A-9999'"),
        (["--patient", "A-1001", "--practice", "west"], "in practice 'west'"),
        (["--patient", "A-1001"], "--patient needs --practice"),
        ([], "Pass either --user"),
        (["--user", "stan_staff", "--ttl-hours", "0"], "--ttl-hours must be a positive"),
    ],
)
def test_issue_token_refuses_unknown_owners_clearly(world, args, problem):
    with pytest.raises(CommandError, match=re.escape(problem)):
        run("issue_token", *args)

    assert not ApiToken.objects.exists()


def test_expired_token_is_refused(world):
    token = run("issue_token", "--user", world.staff.username).strip()
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(DomainError) as refused:
        authenticate_token(token)

    assert refused.value.code == ErrorCode.UNAUTHENTICATED
    assert "expired" in refused.value.message


def test_revoke_tokens_revokes_every_token_of_the_user_and_prints_the_count(world):
    tokens = [run("issue_token", "--user", world.staff.username).strip() for _ in range(2)]
    other = run("issue_token", "--user", world.subscriber.username).strip()

    output = run("revoke_tokens", "--user", world.staff.username)

    assert output.strip() == "Revoked 2 tokens of user stan_staff."
    for token in tokens:
        with pytest.raises(DomainError) as refused:
            authenticate_token(token)
        assert refused.value.code == ErrorCode.UNAUTHENTICATED
    assert authenticate_token(other).user == world.subscriber


def test_revoke_tokens_of_a_patient(world):
    token = run("issue_token", "--patient", "A-1001", "--practice", "north").strip()

    output = run("revoke_tokens", "--patient", "A-1001", "--practice", "north")

    assert output.strip() == "Revoked 1 token of patient A-1001 of practice north."
    with pytest.raises(DomainError):
        authenticate_token(token)


def test_revoking_tokens_needs_exactly_one_owner(world):
    token = run("issue_token", "--user", world.staff.username).strip()

    with pytest.raises(ValueError, match="exactly one"):
        revoke_tokens()

    assert authenticate_token(token).user == world.staff


def demo_row_counts() -> dict[str, int]:
    models = (
        Practice,
        PracticeSetting,
        User,
        Membership,
        PermissionGrant,
        Patient,
        Mailbox,
        MailboxSubscription,
        Conversation,
        Message,
        Event,
        AuditEvent,
    )
    return {model.__name__: model.objects.count() for model in models}


def test_load_demo_creates_the_demo_practices_through_the_actions(db):
    run("load_demo")

    assert set(Practice.objects.values_list("key", flat=True)) == {"north", "south"}
    assert Patient.objects.count() == 200
    assert Patient.objects.get(practice__key="north", account_number="N-10001").full_name == "María García"
    patel = User.objects.get(full_name="Dr. Priya Patel")
    assert patel.check_password(DEMO_PASSWORD)
    assert Membership.objects.get(user=patel).is_clinician
    assert Membership.objects.filter(user__username="sofia").count() == 2
    assert set(Mailbox.objects.filter(practice__key="north").values_list("name", "is_active")) == {
        ("Billing", True),
        ("Scheduling", True),
        ("Dr. Patel", True),
        ("Old Referrals", False),
    }
    assert Conversation.objects.filter(status=ConversationStatus.ARCHIVED).count() == 1
    directions = set(Message.objects.values_list("direction", flat=True))
    assert directions == {"TO_PATIENT", "FROM_PATIENT"}
    assert AuditEvent.objects.filter(operation="sendPortalMessage").exists()
    assert Event.objects.filter(kind="MESSAGE_ADDED").count() == Message.objects.count()


def test_load_demo_twice_changes_nothing(db):
    run("load_demo")
    before = demo_row_counts()

    run("load_demo")

    assert demo_row_counts() == before


def test_load_demo_again_keeps_the_changes_made_in_the_workbench(db):
    # given the demo, then changes an owner and a subscriber make in the Workbench
    run("load_demo")
    north = Practice.objects.get(key="north")
    olivia, frank, mia = (User.objects.get(username=name) for name in ("olivia", "frank", "mia"))
    actions.grant_permission(
        acting_user=olivia, practice_id=north.pk, user_id=frank.pk, permission="MAILBOX_ADMIN_PERMISSION"
    )
    actions.revoke_permission(
        acting_user=olivia, practice_id=north.pk, user_id=mia.pk, permission="MAILBOX_ADMIN_PERMISSION"
    )
    actions.set_practice_setting(
        acting_user=olivia, practice_id=north.pk, key="patient_portal.use_mailbox_messaging", value="F"
    )
    billing = Mailbox.objects.get(practice=north, name="Billing")
    actions.unsubscribe_from_mailbox(acting_user=frank, mailbox_id=billing.pk)
    before = demo_row_counts()

    # when `make run` loads the demo again
    output = run("load_demo")

    # then nothing is reverted, and the command says why it left the database alone
    assert "already loaded" in output
    assert set(
        PermissionGrant.objects.filter(membership__practice=north).values_list("membership__user__username", flat=True)
    ) == {"frank"}
    assert PracticeSetting.objects.get(practice=north, key="patient_portal.use_mailbox_messaging").value == "F"
    assert not MailboxSubscription.objects.filter(mailbox=billing, user=frank).exists()
    assert demo_row_counts() == before


def test_load_demo_reload_reapplies_the_demo_directory(db):
    # given the demo with Mia's mailbox admin permission revoked
    run("load_demo")
    north = Practice.objects.get(key="north")
    mia = User.objects.get(username="mia")
    actions.revoke_permission(
        acting_user=User.objects.get(username="olivia"),
        practice_id=north.pk,
        user_id=mia.pk,
        permission="MAILBOX_ADMIN_PERMISSION",
    )

    # when it is loaded with --reload
    run("load_demo", "--reload")

    # then the directory's permission is back
    assert PermissionGrant.objects.filter(membership__user=mia, membership__practice=north).exists()


def test_demo_tokens_prints_urls_logins_and_working_headers(db):
    run("load_demo")

    output = run("demo_tokens", "--url", "http://127.0.0.1:8000")

    assert "http://127.0.0.1:8000/graphql" in output
    assert DEMO_PASSWORD in output
    tokens = re.findall(r"Authorization: Bearer (\S+)", output)
    owners = [authenticate_token(token) for token in tokens]
    assert [o.user.username for o in owners if o.user] == ["olivia", "mia", "frank"]
    assert [o.patient.full_name for o in owners if o.patient] == ["María García"]


def test_demo_tokens_without_the_demo_asks_to_load_it(db):
    with pytest.raises(CommandError, match="load_demo"):
        run("demo_tokens")
