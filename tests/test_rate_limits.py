"""Rate limits over HTTP: sends and searches per user or patient, failed tokens per IP address."""

from __future__ import annotations

import pytest
from django.test import Client

from core import actions
from core.models import AuditEvent, Message
from core.tokens import issue_token
from tests.graphql_client import Api, gid

SEND = 'mutation($c: ID!) { sendMessage(conversationId: $c, body: "hello") { id } }'
PORTAL_SEND = 'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "hello") { id } }'
SEARCH = 'query($p: ID!) { searchPatients(practiceId: $p, query: "garc") { id } }'
ME = "query { me { username } }"


@pytest.fixture
def limits(settings):
    """Low limits over an hour-long window, so a test never straddles a window boundary."""

    def set_limits(**limits: int) -> None:
        settings.MAILBOX = {**settings.MAILBOX, **{name: (count, 3600) for name, count in limits.items()}}

    return set_limits


def refusal(answer: dict) -> dict:
    [error] = answer["errors"]
    return error


def test_sends_past_the_limit_are_refused_with_a_retry_after_hint(world, limits):
    limits(SEND_RATE_LIMIT=2)
    api = Api.as_user(world.subscriber)
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    api.data(SEND, conversation)
    api.data(SEND, conversation)

    error = refusal(api.post(SEND, conversation))

    assert error["extensions"]["code"] == "RATE_LIMITED"
    retry_after = error["extensions"]["retryAfter"]
    assert 0 < retry_after <= 3600
    assert f"try again in {retry_after} seconds" in error["message"]
    assert Message.objects.count() == 2


def test_send_limit_counts_per_user(world, limits):
    limits(SEND_RATE_LIMIT=1)
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    Api.as_user(world.subscriber).data(SEND, conversation)

    Api.as_user(world.mailbox_admin).data(SEND, conversation)

    assert Message.objects.count() == 2


def test_portal_sends_are_limited_per_patient(world, limits):
    limits(SEND_RATE_LIMIT=1)
    api = Api.as_patient(world.patient)
    mailbox = {"m": gid("Mailbox", world.billing.pk)}
    api.data(PORTAL_SEND, mailbox)

    assert refusal(api.post(PORTAL_SEND, mailbox))["extensions"]["code"] == "RATE_LIMITED"
    Api.as_patient(world.other_patient).data(PORTAL_SEND, mailbox)
    assert Message.objects.count() == 2


def test_searches_past_the_limit_are_refused(world, limits):
    limits(SEARCH_RATE_LIMIT=3)
    api = Api.as_user(world.staff)
    practice = {"p": gid("Practice", world.practice.pk)}
    for _ in range(3):
        api.data(SEARCH, practice)

    error = refusal(api.post(SEARCH, practice))

    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] > 0
    assert AuditEvent.objects.filter(operation="searchPatients").count() == 3
    Api.as_user(world.subscriber).data(SEARCH, practice)  # another user searches on


def test_failed_tokens_past_the_limit_block_the_address_but_not_others(world, limits):
    limits(TOKEN_FAILURE_RATE_LIMIT=3)
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for attempt in range(3):
        assert Api(f"pmm_guess-{attempt}", client=attacker).error_code(ME) == "UNAUTHENTICATED"

    blocked = refusal(Api("pmm_guess-4", client=attacker).post(ME))
    valid_from_blocked = refusal(Api(issue_token(user=world.staff), client=attacker).post(ME))
    other_address = Api(issue_token(user=world.staff), client=Client(REMOTE_ADDR="198.51.100.2")).data(ME)

    assert blocked["extensions"]["code"] == "RATE_LIMITED"
    assert blocked["extensions"]["retryAfter"] > 0
    assert valid_from_blocked["extensions"]["code"] == "RATE_LIMITED"
    assert other_address == {"me": {"username": world.staff.username}}
    # Three failures audited; the refused flood itself writes nothing.
    assert (
        list(AuditEvent.objects.filter(operation="authenticate").values_list("ip", "outcome"))
        == [("203.0.113.7", "UNAUTHENTICATED")] * 3
    )


def test_valid_tokens_do_not_count_as_failures(world, limits):
    limits(TOKEN_FAILURE_RATE_LIMIT=1)
    api = Api.as_user(world.staff)

    for _ in range(3):
        api.data(ME)


def test_limits_guard_the_api_not_scripts_and_commands(world, limits):
    limits(SEND_RATE_LIMIT=1)

    for _ in range(3):
        actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="x")

    assert Message.objects.count() == 3


def test_a_counted_attempt_starts_a_counter_that_expires_with_its_window(world, limits):
    # given a search limit over an hour-long window
    from django.core.cache import cache

    from core import ratelimit
    from core.context import RequestInfo, reset_current_request, set_current_request

    limits(SEARCH_RATE_LIMIT=5)
    token = set_current_request(RequestInfo(ip="127.0.0.1"))
    try:
        # when one attempt is counted twice
        ratelimit.hit(ratelimit.SEARCHES, "user:ttl-probe")
        ratelimit.hit(ratelimit.SEARCHES, "user:ttl-probe")
    finally:
        reset_current_request(token)
    # then the window's counter holds both, and disappears by itself after the window
    _, window_start, _ = ratelimit._current(ratelimit.SEARCHES)
    key = ratelimit._key(ratelimit.SEARCHES, "user:ttl-probe", window_start)
    assert cache.get(key) == 2
    ttl = cache.ttl(key) if hasattr(cache, "ttl") else None
    if ttl is None and hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):
        full_key = cache.make_and_validate_key(key)
        ttl = cache._cache.get_client(full_key).ttl(full_key)
    if ttl is not None:
        assert 0 < ttl <= 3601
