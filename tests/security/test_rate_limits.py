"""Rate limits over HTTP: sends and searches per user or patient, failed tokens per address and token prefix."""

from __future__ import annotations

import contextvars

import pytest
from django.test import Client

from core import actions, ratelimit
from core.errors import DomainError, ErrorCode
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


def test_a_caller_outside_any_request_is_limited_unless_it_says_it_is_trusted(world, limits):
    # Given a limit of one send, and a context with no request that did not declare itself trusted
    limits(SEND_RATE_LIMIT=1)
    untrusted = contextvars.copy_context()  # the same database connection, without the test's exempt() scope
    untrusted.run(ratelimit._exempt.set, False)

    def send() -> None:
        actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="hi")

    # When it sends twice, then the second send is refused, counted against the user
    untrusted.run(send)
    with pytest.raises(DomainError) as refused:
        untrusted.run(send)
    assert refused.value.code == ErrorCode.RATE_LIMITED
    # while the test itself, a trusted caller (tests/conftest.py), may go on arranging data
    send()
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


def test_failed_tokens_past_the_limit_block_bad_tokens_from_the_address_but_never_a_valid_token(world, limits):
    # given an address that used up its failed-token limit
    limits(TOKEN_FAILURE_RATE_LIMIT=3)
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for attempt in range(3):
        assert Api(f"pmm_guess{attempt}-xyz", client=attacker).error_code(ME) == "UNAUTHENTICATED"

    # when it sends another bad token, and a valid token comes from the same (shared) address and from another
    blocked = refusal(Api("pmm_guess4-xyz", client=attacker).post(ME))
    valid_from_blocked = Api(issue_token(user=world.staff), client=attacker).data(ME)
    other_address = Api(issue_token(user=world.staff), client=Client(REMOTE_ADDR="198.51.100.2")).data(ME)

    # then only the bad token is refused
    assert blocked["extensions"]["code"] == "RATE_LIMITED"
    assert blocked["extensions"]["retryAfter"] > 0
    assert valid_from_blocked == {"me": {"username": world.staff.username}}
    assert other_address == {"me": {"username": world.staff.username}}
    # Three failures audited; the refused flood itself writes nothing.
    assert (
        list(AuditEvent.objects.filter(operation="authenticate").values_list("ip", "outcome"))
        == [("203.0.113.7", "UNAUTHENTICATED")] * 3
    )


def test_failed_tokens_are_counted_per_token_prefix_across_addresses(world, limits):
    # given one token prefix guessed from three addresses, up to the limit
    limits(TOKEN_FAILURE_RATE_LIMIT=3)
    for octet in (1, 2, 3):
        client = Client(REMOTE_ADDR=f"203.0.113.{octet}")
        assert Api(f"pmm_AAAAAAAA-guess-{octet}", client=client).error_code(ME) == "UNAUTHENTICATED"

    # when a fourth address tries the same prefix, and another prefix
    fresh = Client(REMOTE_ADDR="203.0.113.4")
    same_prefix = refusal(Api("pmm_AAAAAAAA-guess-4", client=fresh).post(ME))
    other_prefix = refusal(Api("pmm_BBBBBBBB-guess-4", client=fresh).post(ME))

    # then the prefix is locked whatever the address, other prefixes are not, and valid tokens still work
    assert same_prefix["extensions"]["code"] == "RATE_LIMITED"
    assert other_prefix["extensions"]["code"] == "UNAUTHENTICATED"
    assert Api(issue_token(user=world.staff), client=fresh).data(ME) == {"me": {"username": world.staff.username}}


def test_behind_a_trusted_proxy_failures_count_per_forwarded_address(world, limits, settings):
    # given one proxy in front of the service: every request comes from its address
    settings.TRUSTED_PROXY_COUNT = 1
    limits(TOKEN_FAILURE_RATE_LIMIT=3)
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    for attempt in range(3):
        api = Api(f"pmm_guess{attempt}-xyz", client=proxy)
        assert api.post(ME, **{"X-Forwarded-For": "203.0.113.7"})["errors"][0]["extensions"]["code"] == (
            "UNAUTHENTICATED"
        )

    # when the attacker forges an earlier X-Forwarded-For entry, and another client of the proxy mistypes a token
    forged = refusal(Api("pmm_guess4-xyz", client=proxy).post(ME, **{"X-Forwarded-For": "192.0.2.9, 203.0.113.7"}))
    neighbour = refusal(Api("pmm_typo0000-xyz", client=proxy).post(ME, **{"X-Forwarded-For": "198.51.100.2"}))

    # then the attacker's own address is locked, the neighbour's is not, and the audit names the real callers
    assert forged["extensions"]["code"] == "RATE_LIMITED"
    assert neighbour["extensions"]["code"] == "UNAUTHENTICATED"
    assert list(AuditEvent.objects.filter(operation="authenticate").order_by("pk").values_list("ip", flat=True)) == [
        "203.0.113.7",
        "203.0.113.7",
        "203.0.113.7",
        "198.51.100.2",
    ]


def test_forwarded_for_is_ignored_without_a_trusted_proxy(world, limits):
    # given no trusted proxy (the default): X-Forwarded-For is whatever the caller wrote
    limits(TOKEN_FAILURE_RATE_LIMIT=2)
    caller = Client(REMOTE_ADDR="203.0.113.7")
    for attempt in range(2):
        Api(f"pmm_guess{attempt}-xyz", client=caller).post(ME, **{"X-Forwarded-For": f"192.0.2.{attempt}"})

    # when the caller claims yet another address
    answer = refusal(Api("pmm_guess2-xyz", client=caller).post(ME, **{"X-Forwarded-For": "192.0.2.99"}))

    # then its failures were counted against the socket's address all along
    assert answer["extensions"]["code"] == "RATE_LIMITED"
    assert set(AuditEvent.objects.filter(operation="authenticate").values_list("ip", flat=True)) == {"203.0.113.7"}


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "expected"),
    [
        (0, "192.0.2.1", "10.0.0.2"),
        (1, None, "10.0.0.2"),
        (1, "192.0.2.1", "192.0.2.1"),
        (1, "198.51.100.1 , 192.0.2.1", "192.0.2.1"),
        (2, "198.51.100.1, 192.0.2.1, 10.0.0.1", "192.0.2.1"),
        (2, "192.0.2.1", "10.0.0.2"),  # fewer entries than proxies: not through the proxies
        (1, "not-an-address", "10.0.0.2"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address_takes_the_entry_the_trusted_proxies_appended(settings, proxies, forwarded_for, expected):
    from core.context import client_address

    settings.TRUSTED_PROXY_COUNT = proxies

    assert client_address("10.0.0.2", forwarded_for) == expected


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
