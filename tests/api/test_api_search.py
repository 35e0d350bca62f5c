"""searchPatients over HTTP: `first` within 1..50, the workbench switch, one practice only."""

from __future__ import annotations

import pytest

from core.models import WORKBENCH_SETTING, AuditEvent, PracticeSetting
from tests.conftest import make_patient
from tests.graphql_client import Api, gid

pytestmark = pytest.mark.django_db

SEARCH = "query($p: ID!, $q: String!, $n: Int) { searchPatients(practiceId: $p, query: $q, first: $n) { fullName } }"


@pytest.mark.parametrize("first", [-1, 0, 51, 10_000])
def test_first_outside_one_to_fifty_is_a_validation_error_and_searches_nothing(world, first):
    staff = Api.as_user(world.staff)

    answer = staff.post(SEARCH, {"p": gid("Practice", world.practice.pk), "q": "garc", "n": first})

    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert error["extensions"]["field"] == "first"
    assert "between 1 and 50" in error["message"]
    assert answer["data"] is None
    assert not AuditEvent.objects.filter(operation="searchPatients", outcome="SUCCESS").exists()


@pytest.mark.parametrize("first", [1, 50, None])
def test_first_from_one_to_fifty_answers(world, first):
    for n in range(3):
        make_patient(world.practice, f"G-{n}", "Gareth", f"Garcia{n}")
    staff = Api.as_user(world.staff)

    found = staff.data(SEARCH, {"p": gid("Practice", world.practice.pk), "q": "garc", "n": first})["searchPatients"]

    assert len(found) == (1 if first == 1 else 4)


def test_patient_search_over_http_folds_letters_nfkd_keeps_whole(world):
    make_patient(world.practice, "L-1", "Łukasz", "Nowak")
    staff = Api.as_user(world.staff)

    found = staff.data(SEARCH, {"p": gid("Practice", world.practice.pk), "q": "luk"})["searchPatients"]

    assert found == [{"fullName": "Łukasz Nowak"}]


def test_patient_search_is_refused_with_the_workbench_switch_off(world):
    # given the workbench is switched off in North only
    PracticeSetting.objects.filter(practice=world.practice, key=WORKBENCH_SETTING).update(value="F")
    # when North's staff and owner search
    for user in (world.staff, world.owner):
        answer = Api.as_user(user).post(SEARCH, {"p": gid("Practice", world.practice.pk), "q": "garc"})
        # then the search is refused as a staff mailbox operation, saying how to turn it on
        (error,) = answer["errors"]
        assert error["extensions"]["code"] == "FEATURE_DISABLED"
        assert WORKBENCH_SETTING in error["message"]
    assert not AuditEvent.objects.filter(operation="searchPatients", outcome="SUCCESS").exists()
    # while South, its switch on, still searches its own patients only, and North's switch does not leak to it
    outsider = Api.as_user(world.outsider)
    assert outsider.data(SEARCH, {"p": gid("Practice", world.other_practice.pk), "q": "A-1001"})["searchPatients"] == [
        {"fullName": "Zoë Outside"}
    ]
    assert outsider.error_code(SEARCH, {"p": gid("Practice", world.practice.pk), "q": "garc"}) == "NOT_FOUND"
