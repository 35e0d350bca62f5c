"""Validation of a directory file into plain records. Every problem is collected with the line of its record."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from core.actions.practice import setting_problem
from core.directory.jsonlines import line_of
from core.models import PracticePermission, Role
from core.text import has_unstorable_characters, strip_invisible, unstorable_text_message

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PRACTICE_KEY = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
_username_validator = UnicodeUsernameValidator()

PRACTICE_FIELDS = {"key", "name", "settings", "staff", "patients"}
STAFF_FIELDS = {"username", "fullName", "password", "role", "isClinician", "permissions"}
PATIENT_FIELDS = {"accountNumber", "firstName", "lastName", "preferredPronoun", "dateOfBirth", "email"}


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


@dataclass
class StaffRecord:
    line: int
    username: str
    full_name: str
    password: str
    role: Role
    is_clinician: bool
    permissions: frozenset[str]


@dataclass
class PatientRecord:
    line: int
    account_number: str
    first_name: str
    last_name: str
    preferred_pronoun: str
    date_of_birth: date
    email: str = ""


@dataclass
class PracticeRecord:
    line: int
    key: str
    name: str
    settings: dict[str, str] | None
    staff: list[StaffRecord] = field(default_factory=list)
    patients: list[PatientRecord] = field(default_factory=list)


class _Checker:
    """Reads fields of one JSON object, noting problems instead of stopping at the first."""

    def __init__(self, problems: list[Problem], obj: dict, label: str) -> None:
        self.problems, self.obj, self.label, self.line = problems, obj, label, line_of(obj)
        self.ok = True

    def fail(self, message: str, line: int | None = None) -> None:
        self.ok = False
        self.problems.append(Problem(line or self.line, f"{self.label}: {message}"))

    def unknown_fields(self, allowed: set[str]) -> None:
        for name in sorted(set(self.obj) - allowed):
            self.fail(f"unknown field {name!r} (allowed: {', '.join(sorted(allowed))})")

    def text(self, name: str, *, max_length: int, required: bool = True) -> str:
        if name not in self.obj:
            if required:
                self.fail(f"missing field {name!r}")
            return ""
        value = self.obj[name]
        if not isinstance(value, str):
            self.fail(f"{name} must be a string, not {type(value).__name__}")
            return ""
        if has_unstorable_characters(value):
            self.fail(unstorable_text_message(name))
            return ""
        value = strip_invisible(unicodedata.normalize("NFC", value))
        if required and not value:
            self.fail(f"{name} is empty")
        elif len(value) > max_length:
            self.fail(f"{name} is longer than {max_length} characters")
        return value

    def flag(self, name: str) -> bool:
        value = self.obj.get(name, False)
        if not isinstance(value, bool):
            self.fail(f"{name} must be true or false, not {value!r}")
            return False
        return value

    def items(self, name: str) -> list | None:
        if name not in self.obj:
            return None
        value = self.obj[name]
        if not isinstance(value, list):
            self.fail(f"{name} must be a list")
            return None
        return value


def _label(kind: str, obj: Any, id_field: str, index: int) -> str:
    ident = obj.get(id_field) if isinstance(obj, dict) else None
    return f"{kind} {ident}" if isinstance(ident, str) and ident.strip() else f"{kind} #{index + 1}"


def _objects(problems: list[Problem], items: list, kind: str, parent_line: int) -> list[tuple[int, dict]]:
    found = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            found.append((index, item))
        else:
            problems.append(Problem(parent_line, f"{kind} #{index + 1}: must be an object, not {type(item).__name__}"))
    return found


def _settings(problems: list[Problem], practice: _Checker) -> dict[str, str] | None:
    if "settings" not in practice.obj:
        return None
    raw = practice.obj["settings"]
    if not isinstance(raw, dict):
        practice.fail("settings must be an object of key → value")
        return None
    settings: dict[str, str] = {}
    line = line_of(raw, practice.line)
    for key, value in raw.items():
        if not isinstance(value, str):
            practice.fail(f'setting {key!r} must be a string such as "T" or "F", not {value!r}', line)
            continue
        problem = setting_problem(key, value.strip())
        if problem is not None:
            practice.fail(f"setting {key!r}: {problem[1]}", line)
        else:
            settings[key] = value.strip()
    return settings


def _staff(problems: list[Problem], obj: dict, index: int) -> StaffRecord | None:
    check = _Checker(problems, obj, _label("staff", obj, "username", index))
    check.unknown_fields(STAFF_FIELDS)
    username = check.text("username", max_length=150)
    if username:
        try:
            _username_validator(username)
        except ValidationError:
            check.fail(f"username {username!r} may contain only letters, digits and @ . + - _")
    full_name = check.text("fullName", max_length=200)
    password = obj.get("password")
    if "password" not in obj:
        check.fail("missing field 'password'")
    elif not isinstance(password, str) or not password:
        check.fail("password must be a non-empty string")
    elif has_unstorable_characters(password):
        check.fail(unstorable_text_message("password"))
    else:
        try:
            validate_password(password)
        except ValidationError as exc:
            check.fail(f"password is not acceptable: {' '.join(exc.messages)}")
    role = check.text("role", max_length=20)
    if role and role not in Role.values:
        check.fail(f"role {role!r} is not one of {', '.join(Role.values)}")
    is_clinician = check.flag("isClinician")
    permissions = check.items("permissions") or []
    for permission in permissions:
        if permission not in PracticePermission.values:
            check.fail(f"permission {permission!r} is unknown (known: {', '.join(PracticePermission.values)})")
    if not check.ok:
        return None
    return StaffRecord(
        line=check.line,
        username=username,
        full_name=full_name,
        password=password,
        role=Role(role),
        is_clinician=is_clinician,
        permissions=frozenset(permissions),
    )


def _patient(problems: list[Problem], obj: dict, index: int) -> PatientRecord | None:
    check = _Checker(problems, obj, _label("patient", obj, "accountNumber", index))
    check.unknown_fields(PATIENT_FIELDS)
    account = check.text("accountNumber", max_length=64)
    first = check.text("firstName", max_length=100)
    last = check.text("lastName", max_length=100)
    pronoun = check.text("preferredPronoun", max_length=40, required=False)
    raw_dob = check.text("dateOfBirth", max_length=100)
    email = check.text("email", max_length=254, required=False)
    if email:
        try:
            validate_email(email)
        except ValidationError:
            check.fail(f"email {email!r} is not an email address")
    dob = None
    if raw_dob:
        try:
            dob = date.fromisoformat(raw_dob) if _ISO_DATE.match(raw_dob) else None
        except ValueError:
            dob = None
        if dob is None:
            check.fail(f"dateOfBirth {raw_dob!r} is not a date (YYYY-MM-DD)")
        elif dob > date.today():
            check.fail(f"dateOfBirth {raw_dob!r} is in the future")
    if not check.ok:
        return None
    return PatientRecord(
        line=check.line,
        account_number=account,
        first_name=first,
        last_name=last,
        preferred_pronoun=pronoun,
        date_of_birth=dob,
        email=email,
    )


def _check_same_person(problems: list[Problem], first: StaffRecord, again: StaffRecord) -> None:
    """A username is global: every listing of it must describe the same person."""
    label = f"staff {again.username}"
    if again.full_name != first.full_name:
        problems.append(
            Problem(
                again.line,
                f"{label}: fullName {again.full_name!r} differs from line {first.line} "
                f"({first.full_name!r}); a username is one person in every practice",
            )
        )
    if again.password != first.password:
        problems.append(
            Problem(
                again.line,
                f"{label}: password differs from the one at line {first.line}; "
                "a username has one password in every practice",
            )
        )


def _practice(problems: list[Problem], obj: dict, index: int, people: dict[str, StaffRecord]) -> PracticeRecord | None:
    check = _Checker(problems, obj, _label("practice", obj, "key", index))
    check.unknown_fields(PRACTICE_FIELDS)
    key = check.text("key", max_length=64)
    if key and not _PRACTICE_KEY.match(key):
        check.fail(f"key {key!r} may contain only letters, digits, - and _")
    name = check.text("name", max_length=200)
    settings = _settings(problems, check)
    record = PracticeRecord(line=check.line, key=key, name=name, settings=settings)
    usernames: dict[str, int] = {}
    for staff_index, staff_obj in _objects(problems, check.items("staff") or [], "staff", check.line):
        staff = _staff(problems, staff_obj, staff_index)
        if staff is None:
            continue
        if staff.username in usernames:
            problems.append(
                Problem(
                    staff.line,
                    f"staff {staff.username}: listed twice in practice {key} "
                    f"(first at line {usernames[staff.username]})",
                )
            )
            continue
        usernames[staff.username] = staff.line
        if staff.username in people:
            _check_same_person(problems, people[staff.username], staff)
        else:
            people[staff.username] = staff
        record.staff.append(staff)
    accounts: dict[str, int] = {}
    for patient_index, patient_obj in _objects(problems, check.items("patients") or [], "patient", check.line):
        patient = _patient(problems, patient_obj, patient_index)
        if patient is None:
            continue
        if patient.account_number in accounts:
            problems.append(
                Problem(
                    patient.line,
                    f"patient {patient.account_number}: duplicate account number in "
                    f"practice {key} (first at line {accounts[patient.account_number]})",
                )
            )
            continue
        accounts[patient.account_number] = patient.line
        record.patients.append(patient)
    return record if check.ok else None


def parse_directory(data: Any) -> tuple[list[PracticeRecord], list[Problem]]:
    """Returns the practices of a decoded directory file and every problem found, in file order."""
    problems: list[Problem] = []
    if not isinstance(data, dict) or not isinstance(data.get("practices"), list):
        return [], [Problem(1, 'the file must be an object with a "practices" list')]
    unknown = sorted(set(data) - {"practices"})
    if unknown:
        problems.append(Problem(line_of(data), f"unknown top-level field(s): {', '.join(unknown)}"))
    practices: list[PracticeRecord] = []
    keys: dict[str, int] = {}
    people: dict[str, StaffRecord] = {}
    for index, obj in _objects(problems, data["practices"], "practice", line_of(data)):
        practice = _practice(problems, obj, index, people)
        if practice is None:
            continue
        if practice.key in keys:
            problems.append(
                Problem(practice.line, f"practice {practice.key}: listed twice (first at line {keys[practice.key]})")
            )
            continue
        keys[practice.key] = practice.line
        practices.append(practice)
    problems.sort(key=lambda problem: problem.line)
    return practices, problems
