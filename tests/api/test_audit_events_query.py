"""`auditEvents`: owners and administrators page through their practice's trail, newest first, with filters."""

from __future__ import annotations

import datetime as dt
import time
import warnings

import pytest

from core import audit
from core.models import AccessSource, AuditAction, AuditEvent
from tests.graphql_client import Api, gid

AUDIT = """
query($p: ID!, $first: Int, $after: String, $user: ID, $patient: ID, $action: AuditAction,
      $since: DateTime, $until: DateTime) {
  auditEvents(practiceId: $p, first: $first, after: $after, userId: $user, patientId: $patient,
              action: $action, since: $since, until: $until) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id operation action outcome via ip requestId createdAt practiceId
                   actorUser { username } actorPatient { fullName } patient { accountNumber } } }
  }
}
"""


@pytest.fixture
def trail(world) -> list[AuditEvent]:
    """Six events of North, one of South, a few milliseconds apart (since/until bounds are exact)."""
    rows = [
        (world.subscriber, world.patient, AuditAction.READ),
        (world.subscriber, world.other_patient, AuditAction.READ),
        (world.staff, world.patient, AuditAction.CREATE),
        (world.owner, None, AuditAction.UPDATE),
        (world.staff, world.other_patient, AuditAction.READ),
        (world.subscriber, world.patient, AuditAction.EXECUTE),
    ]
    events = []
    for user, patient, action in rows:
        events.append(
            audit.record(
                operation="test",
                action=action,
                practice=world.practice,
                actor_user=user,
                patient=patient,
                via=AccessSource.MAILBOX,
            )
        )
        time.sleep(0.005)
    audit.record(operation="test", action=AuditAction.READ, practice=world.other_practice, actor_user=world.outsider)
    return events


def page(api: Api, practice, **variables) -> dict:
    return api.data(AUDIT, {"p": gid("Practice", practice.pk), **variables})["auditEvents"]


def ids(connection: dict) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


def gids(events) -> list[str]:
    return [gid("AuditEvent", e.pk) for e in events]


def test_owner_pages_through_the_trail_newest_first_without_gaps_or_repeats(world, trail):
    api = Api.as_user(world.owner)
    seen, after = [], None
    while True:
        connection = page(api, world.practice, first=4, after=after)
        assert connection["totalCount"] == 6
        seen += ids(connection)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]

    assert seen == gids(reversed(trail))


def test_filters_by_user_patient_action_and_time(world, trail):
    api = Api.as_user(world.administrator)
    north = world.practice

    by_user = page(api, north, user=gid("User", world.staff.pk))
    by_patient = page(api, north, patient=gid("Patient", world.patient.pk))
    by_action = page(api, north, action="READ")
    combined = page(api, north, user=gid("User", world.subscriber.pk), patient=gid("Patient", world.patient.pk))
    window = page(api, north, since=trail[1].created_at.isoformat(), until=trail[4].created_at.isoformat())

    assert ids(by_user) == gids([trail[4], trail[2]])
    assert ids(by_patient) == gids([trail[5], trail[2], trail[0]])
    assert ids(by_action) == gids([trail[4], trail[1], trail[0]])
    assert ids(combined) == gids([trail[5], trail[0]])
    assert ids(window) == gids([trail[3], trail[2], trail[1]])  # since inclusive, until exclusive
    assert window["totalCount"] == 3


def test_each_event_says_who_what_how_and_for_which_patient(world, trail):
    node = page(Api.as_user(world.owner), world.practice, first=1)["edges"][0]["node"]

    assert node["operation"] == "test"
    assert node["action"] == "EXECUTE"
    assert node["outcome"] == "SUCCESS"
    assert node["via"] == "MAILBOX"
    assert node["actorUser"] == {"username": world.subscriber.username}
    assert node["actorPatient"] is None
    assert node["patient"] == {"accountNumber": world.patient.account_number}
    assert node["practiceId"] == gid("Practice", world.practice.pk)


@pytest.mark.parametrize(
    ("who", "code"),
    [("staff", "FORBIDDEN"), ("mailbox_admin", "FORBIDDEN"), ("subscriber", "FORBIDDEN"), ("outsider", "NOT_FOUND")],
)
def test_only_owners_and_administrators_read_the_trail(world, trail, who, code):
    api = Api.as_user(getattr(world, who))

    assert api.error_code(AUDIT, {"p": gid("Practice", world.practice.pk)}) == code


def test_patients_and_anonymous_callers_cannot_read_the_trail(world, trail):
    variables = {"p": gid("Practice", world.practice.pk)}

    assert Api.as_patient(world.patient).error_code(AUDIT, variables) == "FORBIDDEN"
    assert Api().error_code(AUDIT, variables) == "UNAUTHENTICATED"


def test_another_practices_events_never_show(world, trail):
    connection = page(Api.as_user(world.owner), world.practice)

    assert connection["totalCount"] == 6
    assert gid("AuditEvent", AuditEvent.objects.get(practice=world.other_practice).pk) not in ids(connection)


def test_a_page_of_the_trail_takes_a_constant_number_of_queries(world, trail, django_assert_max_num_queries):
    api = Api.as_user(world.owner)
    for _ in range(40):
        audit.record(
            operation="more",
            action=AuditAction.READ,
            practice=world.practice,
            actor_user=world.staff,
            patient=world.patient,
        )

    with django_assert_max_num_queries(12):
        connection = page(api, world.practice, first=50)

    assert len(connection["edges"]) == 46


@pytest.mark.parametrize("field", ["since", "until"])
def test_a_time_without_an_offset_is_refused_naming_its_argument(world, trail, field):
    # given an administrator sending a window bound without a time zone
    naive = trail[1].created_at.replace(tzinfo=None).isoformat()
    # when the trail is asked for
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        answer = Api.as_user(world.administrator).post(AUDIT, {"p": gid("Practice", world.practice.pk), field: naive})
    # then it is a validation error naming the argument, saying what to send; nothing is read in an assumed zone
    [error] = answer["errors"]
    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": field}
    assert error["message"].startswith(f"{field} needs a time zone offset")
    assert answer["data"] is None
    assert not [w for w in warned if "naive datetime" in str(w.message)]


def test_a_time_without_an_offset_from_someone_who_may_not_read_the_trail_is_refused_for_that(world, trail):
    naive = trail[1].created_at.replace(tzinfo=None).isoformat()
    answer = Api.as_user(world.subscriber).post(AUDIT, {"p": gid("Practice", world.practice.pk), "since": naive})
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_a_window_given_in_another_offset_is_the_same_instants(world, trail):
    # given the same bounds written at UTC+02:00 and at UTC
    plus_two = dt.timezone(dt.timedelta(hours=2))
    api = Api.as_user(world.administrator)
    utc = page(api, world.practice, since=trail[1].created_at.isoformat(), until=trail[4].created_at.isoformat())
    shifted = page(
        api,
        world.practice,
        since=trail[1].created_at.astimezone(plus_two).isoformat(),
        until=trail[4].created_at.astimezone(plus_two).isoformat(),
    )
    # then they select the same events
    assert ids(shifted) == ids(utc) == gids([trail[3], trail[2], trail[1]])


def test_mailbox_stats_refuse_a_since_without_an_offset_too(world):
    answer = Api.as_user(world.subscriber).post(
        "query($m: ID!, $s: DateTime) { mailbox(id: $m) { name stats(since: $s) { openCount } } }",
        {"m": gid("Mailbox", world.billing.pk), "s": "2026-01-31T08:00:00"},
    )
    [error] = answer["errors"]
    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": "since"}
    assert error["path"] == ["mailbox", "stats"]
    assert answer["data"]["mailbox"] == {"name": "Billing", "stats": None}
