"""`manage.py import_directory` (SPEC §4): validated first, written in one transaction, idempotent."""

from __future__ import annotations

import copy
import datetime as dt
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from core.models import (
    PORTAL_SETTING,
    WORKBENCH_SETTING,
    AuditEvent,
    Membership,
    Patient,
    PermissionGrant,
    Practice,
    PracticeSetting,
    Role,
    User,
)

pytestmark = pytest.mark.django_db

DIRECTORY = {
    "practices": [
        {
            "key": "north",
            "name": "North Clinic",
            "settings": {WORKBENCH_SETTING: "T", PORTAL_SETTING: "T"},
            "staff": [
                {
                    "username": "alice",
                    "fullName": "Alice Ng",
                    "password": "s3cret-pass",
                    "role": "OWNER",
                    "isClinician": False,
                    "permissions": ["MAILBOX_ADMIN_PERMISSION"],
                },
                {
                    "username": "priya",
                    "fullName": "Dr. Priya Patel",
                    "password": "another-pass",
                    "role": "STAFF",
                    "isClinician": True,
                    "permissions": [],
                },
            ],
            "patients": [
                {
                    "accountNumber": "A-1001",
                    "firstName": "María",
                    "lastName": "García",
                    "preferredPronoun": "she/her",
                    "dateOfBirth": "1980-04-02",
                },
                {
                    "accountNumber": "A-1002",
                    "firstName": "José",
                    "lastName": "Núñez",
                    "preferredPronoun": "he/him",
                    "dateOfBirth": "1975-11-23",
                },
            ],
        },
        {
            "key": "south",
            "name": "South Clinic",
            "settings": {WORKBENCH_SETTING: "F"},
            "staff": [
                {
                    "username": "alice",
                    "fullName": "Alice Ng",
                    "password": "s3cret-pass",
                    "role": "STAFF",
                    "isClinician": False,
                    "permissions": [],
                },
            ],
            "patients": [
                {
                    "accountNumber": "A-1001",
                    "firstName": "Zoë",
                    "lastName": "Brontë",
                    "preferredPronoun": "she/her",
                    "dateOfBirth": "1992-07-14",
                },
            ],
        },
    ]
}


def directory() -> dict:
    return copy.deepcopy(DIRECTORY)


def write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return str(path)


def run_import(path: str) -> str:
    out = StringIO()
    call_command("import_directory", path, stdout=out)
    return out.getvalue()


def line_of_record(path: str, needle: str) -> int:
    """The line of the '{' opening the record that contains `needle`."""
    text = Path(path).read_text(encoding="utf-8")
    return text.count("\n", 0, text.rfind("{", 0, text.index(needle))) + 1


def row_counts() -> dict[str, int]:
    models = (Practice, PracticeSetting, User, Membership, PermissionGrant, Patient, AuditEvent)
    return {model.__name__: model.objects.count() for model in models}


def test_import_creates_practices_settings_staff_and_patients(tmp_path):
    path = write(tmp_path / "directory.json", directory())

    output = run_import(path)

    assert set(Practice.objects.values_list("key", "name")) == {("north", "North Clinic"), ("south", "South Clinic")}
    north = Practice.objects.get(key="north")
    assert dict(north.settings.values_list("key", "value")) == {WORKBENCH_SETTING: "T", PORTAL_SETTING: "T"}
    alice = User.objects.get(username="alice")
    assert alice.full_name == "Alice Ng"
    assert alice.check_password("s3cret-pass")
    owner = Membership.objects.get(user=alice, practice=north)
    assert (owner.role, owner.is_clinician) == (Role.OWNER, False)
    assert list(owner.grants.values_list("permission", flat=True)) == ["MAILBOX_ADMIN_PERMISSION"]
    assert Membership.objects.get(user__username="priya").is_clinician
    maria = Patient.objects.get(practice=north, account_number="A-1001")
    assert (maria.full_name, maria.preferred_pronoun, maria.date_of_birth) == (
        "María García",
        "she/her",
        dt.date(1980, 4, 2),
    )
    assert maria.search_name == "maria garcia"
    assert "patients" in output
    assert "3 created" in output


def test_same_username_in_two_practices_is_one_user_with_two_memberships(tmp_path):
    path = write(tmp_path / "directory.json", directory())

    run_import(path)

    alice = User.objects.get(username="alice")
    roles = dict(Membership.objects.filter(user=alice).values_list("practice__key", "role"))
    assert roles == {"north": Role.OWNER, "south": Role.STAFF}
    assert User.objects.filter(username="alice").count() == 1


def test_second_import_changes_nothing(tmp_path):
    path = write(tmp_path / "directory.json", directory())
    run_import(path)
    before = row_counts()
    hashes = dict(User.objects.values_list("username", "password"))

    output = run_import(path)

    assert row_counts() == before
    assert dict(User.objects.values_list("username", "password")) == hashes
    assert " 0 created" in output
    assert " 0 updated" in output
    assert "3 unchanged" in output  # patients


def test_changed_records_are_updated(tmp_path):
    data = directory()
    path = write(tmp_path / "directory.json", data)
    run_import(path)
    old_hash = User.objects.get(username="priya").password
    north = data["practices"][0]
    north["name"] = "North Family Clinic"
    north["settings"][PORTAL_SETTING] = "F"
    north["staff"][0]["role"] = "ADMINISTRATOR"
    north["staff"][0]["permissions"] = []
    north["staff"][1]["password"] = "a-brand-new-pass"
    north["staff"][1]["permissions"] = ["MAILBOX_ADMIN_PERMISSION"]
    north["patients"][0]["lastName"] = "García López"
    north["patients"][1]["dateOfBirth"] = "1975-11-24"
    write(tmp_path / "directory.json", data)

    run_import(path)

    practice = Practice.objects.get(key="north")
    assert practice.name == "North Family Clinic"
    assert practice.settings.get(key=PORTAL_SETTING).value == "F"
    alice = Membership.objects.get(user__username="alice", practice=practice)
    assert alice.role == Role.ADMINISTRATOR
    assert not alice.grants.exists()
    priya = User.objects.get(username="priya")
    assert priya.password != old_hash
    assert priya.check_password("a-brand-new-pass")
    assert Membership.objects.get(user=priya).grants.get().permission == "MAILBOX_ADMIN_PERMISSION"
    maria = Patient.objects.get(practice=practice, account_number="A-1001")
    assert maria.search_name == "maria garcia lopez"
    assert Patient.objects.get(practice=practice, account_number="A-1002").date_of_birth == dt.date(1975, 11, 24)


def test_records_missing_from_the_file_are_left_alone(tmp_path):
    data = directory()
    path = write(tmp_path / "directory.json", data)
    run_import(path)
    del data["practices"][0]["patients"][1]
    del data["practices"][1]
    write(tmp_path / "directory.json", data)

    run_import(path)

    assert Patient.objects.filter(account_number="A-1002").exists()
    assert Practice.objects.filter(key="south").exists()


def test_refused_file_message_names_the_path_line_and_problem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = directory()
    data["practices"][0]["patients"][0]["dateOfBirth"] = "1980-13-01"
    write(tmp_path / "directory.json", data)
    line = line_of_record("directory.json", '"A-1001"')

    with pytest.raises(CommandError) as refused:
        run_import("directory.json")

    assert str(refused.value) == (
        f"directory.json:{line}: patient A-1001: dateOfBirth '1980-13-01' is not a date (YYYY-MM-DD)"
    )


def _set(practice: int, group: str, index: int, field: str, value):
    def mutate(data: dict) -> None:
        data["practices"][practice][group][index][field] = value

    return mutate


def _delete(practice: int, group: str, index: int, field: str):
    def mutate(data: dict) -> None:
        del data["practices"][practice][group][index][field]

    return mutate


def _duplicate_account(data: dict) -> None:
    patients = data["practices"][0]["patients"]
    patients[1]["accountNumber"] = patients[0]["accountNumber"]


def _second_practice_conflicting_name(data: dict) -> None:
    data["practices"][1]["staff"][0]["fullName"] = "Alice Someone-Else"


@pytest.mark.parametrize(
    ("mutate", "needle", "problem"),
    [
        (_set(0, "staff", 0, "role", "BOSS"), '"alice"', "staff alice: role 'BOSS' is not one of OWNER"),
        (_set(0, "patients", 1, "dateOfBirth", "23/11/1975"), '"A-1002"', "is not a date (YYYY-MM-DD)"),
        (_set(0, "patients", 1, "dateOfBirth", "2999-01-01"), '"A-1002"', "is in the future"),
        (_delete(0, "patients", 1, "lastName"), '"A-1002"', "patient A-1002: missing field 'lastName'"),
        (_delete(0, "staff", 1, "password"), '"priya"', "staff priya: missing field 'password'"),
        (_set(0, "staff", 1, "password", "short"), '"priya"', "staff priya: password is not acceptable"),
        (_set(0, "staff", 1, "permissions", ["ROOT"]), '"priya"', "permission 'ROOT' is unknown"),
        (_set(0, "staff", 1, "isClinician", "yes"), '"priya"', "isClinician must be true or false"),
        (_set(0, "patients", 0, "dob", "1980-04-02"), '"A-1001"', "unknown field 'dob'"),
        (_set(0, "patients", 1, "email", "jose at example"), '"A-1002"', "email 'jose at example' is not an email"),
        (_duplicate_account, '"accountNumber": "A-1001",\n          "firstName": "José"', "duplicate account number"),
        (_second_practice_conflicting_name, '"Alice Someone-Else"', "fullName 'Alice Someone-Else' differs"),
    ],
)
def test_bad_input_is_refused_with_its_line_and_nothing_is_written(tmp_path, mutate, needle, problem):
    data = directory()
    mutate(data)
    path = write(tmp_path / "directory.json", data)
    line = line_of_record(path, needle)

    with pytest.raises(CommandError) as refused:
        run_import(path)

    assert f"{path}:{line}: " in str(refused.value)
    assert problem in str(refused.value)
    assert row_counts() == {name: 0 for name in row_counts()}


def test_a_refused_file_leaves_an_earlier_import_untouched(tmp_path):
    data = directory()
    path = write(tmp_path / "directory.json", data)
    run_import(path)
    before = row_counts()
    data["practices"][0]["name"] = "Renamed"
    data["practices"][1]["patients"][0]["dateOfBirth"] = "not a date"
    write(tmp_path / "directory.json", data)

    with pytest.raises(CommandError):
        run_import(path)

    assert row_counts() == before
    assert Practice.objects.get(key="north").name == "North Clinic"


def test_invalid_json_is_refused_with_its_line(tmp_path):
    path = tmp_path / "directory.json"
    path.write_text('{"practices": [\n  {"key": "north",\n   "name": }\n]}', encoding="utf-8")

    with pytest.raises(CommandError) as refused:
        run_import(str(path))

    assert str(refused.value).startswith(f"{path}:3: invalid JSON")


def test_every_problem_of_the_file_is_listed(tmp_path):
    data = directory()
    data["practices"][0]["staff"][0]["role"] = "BOSS"
    data["practices"][1]["patients"][0]["dateOfBirth"] = "1992-02-30"
    path = write(tmp_path / "directory.json", data)

    with pytest.raises(CommandError) as refused:
        run_import(path)

    lines = str(refused.value).splitlines()
    assert len(lines) == 2
    assert "role 'BOSS'" in lines[0]
    assert "'1992-02-30' is not a date" in lines[1]


def test_patient_email_is_optional_imported_and_updated(tmp_path):
    data = directory()
    data["practices"][0]["patients"][0]["email"] = "maria@example.org"
    run_import(write(tmp_path / "directory.json", data))
    emails = dict(Patient.objects.filter(practice__key="north").values_list("account_number", "email"))
    assert emails["A-1001"] == "maria@example.org"
    assert emails["A-1002"] == ""

    data["practices"][0]["patients"][0]["email"] = "maria.g@example.org"
    run_import(write(tmp_path / "directory.json", data))
    assert Patient.objects.get(account_number="A-1001", practice__key="north").email == "maria.g@example.org"
