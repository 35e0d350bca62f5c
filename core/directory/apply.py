"""Writing validated directory records: bulk inserts and updates in one transaction, nothing if unchanged."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

from django.contrib.auth.hashers import check_password, make_password
from django.db import connection, models, transaction

from core import audit
from core.directory.records import PatientRecord, PracticeRecord, StaffRecord
from core.events import emit_access_changed
from core.models import (
    AccessSource,
    AuditAction,
    Membership,
    Patient,
    PermissionGrant,
    Practice,
    PracticeSetting,
    User,
)

BATCH = 2000
T = TypeVar("T")


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ImportSummary:
    practices: Tally = field(default_factory=Tally)
    settings: Tally = field(default_factory=Tally)
    users: Tally = field(default_factory=Tally)
    memberships: Tally = field(default_factory=Tally)
    patients: Tally = field(default_factory=Tally)

    def rows(self) -> list[tuple[str, Tally]]:
        return [(name, getattr(self, name)) for name in ("practices", "settings", "users", "memberships", "patients")]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _update_rows(model: type[models.Model], field_names: list[str], objs: list[models.Model]) -> None:
    """Many single-row UPDATEs in one executemany: far faster than `bulk_update`'s CASE expressions for
    tens of thousands of rows (74 s → a few seconds for 100k patients)."""
    if not objs:
        return
    fields = [model._meta.get_field(name) for name in field_names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
    rows = [[f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields] + [obj.pk] for obj in objs]
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, BATCH):
            cursor.executemany(sql, chunk)


class _Writer:
    def __init__(self, summary: ImportSummary, advance: Callable[[int], None]) -> None:
        self.summary = summary
        self.advance = advance
        self.changed_practices: set[int] = set()
        self.changed_usernames: set[str] = set()

    def practices(self, records: list[PracticeRecord]) -> dict[str, Practice]:
        tally = self.summary.practices
        keys = [r.key for r in records]
        existing = {p.key: p for p in Practice.objects.filter(key__in=keys)}
        new, changed = [], []
        for record in records:
            practice = existing.get(record.key)
            if practice is None:
                new.append(Practice(key=record.key, name=record.name))
            elif practice.name != record.name:
                practice.name = record.name
                changed.append(practice)
            else:
                tally.unchanged += 1
        Practice.objects.bulk_create(new)
        Practice.objects.bulk_update(changed, ["name"])
        tally.created += len(new)
        tally.updated += len(changed)
        by_key = {p.key: p for p in Practice.objects.filter(key__in=keys)}
        self.changed_practices.update(by_key[p.key].pk for p in [*new, *changed])
        return by_key

    def settings(self, practice: Practice, wanted: dict[str, str]) -> None:
        tally = self.summary.settings
        existing = {s.key: s for s in PracticeSetting.objects.filter(practice=practice, key__in=list(wanted))}
        new, changed = [], []
        for key, value in wanted.items():
            setting = existing.get(key)
            if setting is None:
                new.append(PracticeSetting(practice=practice, key=key, value=value))
            elif setting.value != value:
                setting.value = value
                changed.append(setting)
            else:
                tally.unchanged += 1
        PracticeSetting.objects.bulk_create(new)
        PracticeSetting.objects.bulk_update(changed, ["value"])
        tally.created += len(new)
        tally.updated += len(changed)
        if new or changed:
            self.changed_practices.add(practice.pk)

    def users(self, people: dict[str, StaffRecord]) -> dict[str, int]:
        """Creates or updates every listed user; returns username → id."""
        tally = self.summary.users
        existing: dict[str, User] = {}
        for chunk in _chunks(people, 500):
            existing.update((u.username, u) for u in User.objects.filter(username__in=chunk))
        new, changed = [], []
        for username, person in people.items():
            user = existing.get(username)
            if user is None:
                new.append(User(username=username, full_name=person.full_name, password=make_password(person.password)))
                continue
            fields_changed = user.full_name != person.full_name
            user.full_name = person.full_name
            # Hashing is slow and salted: only a password that no longer matches is hashed again.
            if not check_password(person.password, user.password):
                user.password = make_password(person.password)
                fields_changed = True
            if fields_changed:
                changed.append(user)
            else:
                tally.unchanged += 1
        User.objects.bulk_create(new, batch_size=BATCH)
        User.objects.bulk_update(changed, ["full_name", "password"], batch_size=BATCH)
        tally.created += len(new)
        tally.updated += len(changed)
        ids: dict[str, int] = {}
        for chunk in _chunks(people, 500):
            ids.update(User.objects.filter(username__in=chunk).values_list("username", "pk"))
        self.changed_usernames = {u.username for u in new} | {u.username for u in changed}
        return ids

    def memberships(self, practice: Practice, staff: list[StaffRecord], user_ids: dict[str, int]) -> None:
        tally = self.summary.memberships
        staff_ids = [user_ids[person.username] for person in staff]
        existing = {m.user_id: m for m in Membership.objects.filter(practice=practice, user_id__in=staff_ids)}
        new, changed, touched = [], [], set()
        for person in staff:
            user_id = user_ids[person.username]
            membership = existing.get(user_id)
            if membership is None:
                new.append(
                    Membership(user_id=user_id, practice=practice, role=person.role, is_clinician=person.is_clinician)
                )
            elif (membership.role, membership.is_clinician) != (person.role, person.is_clinician):
                membership.role, membership.is_clinician = person.role, person.is_clinician
                changed.append(membership)
        Membership.objects.bulk_create(new)
        Membership.objects.bulk_update(changed, ["role", "is_clinician"])
        touched.update(m.user_id for m in changed)
        memberships = dict(
            Membership.objects.filter(practice=practice, user_id__in=staff_ids).values_list("user_id", "pk")
        )
        grants: dict[int, set[str]] = {}
        for membership_id, permission in PermissionGrant.objects.filter(
            membership_id__in=memberships.values()
        ).values_list("membership_id", "permission"):
            grants.setdefault(membership_id, set()).add(permission)
        for person in staff:
            user_id = user_ids[person.username]
            membership_id = memberships[user_id]
            current = grants.get(membership_id, set())
            if current == person.permissions:
                continue
            PermissionGrant.objects.filter(
                membership_id=membership_id, permission__in=current - person.permissions
            ).delete()
            PermissionGrant.objects.bulk_create(
                [
                    PermissionGrant(membership_id=membership_id, permission=p)
                    for p in sorted(person.permissions - current)
                ]
            )
            touched.add(user_id)
        created_ids = {m.user_id for m in new}
        tally.created += len(created_ids)
        tally.updated += len(touched - created_ids)
        tally.unchanged += len(staff) - len(created_ids | touched)
        if new or touched or any(p.username in self.changed_usernames for p in staff):
            self.changed_practices.add(practice.pk)
        if created_ids | touched:
            emit_access_changed(practice_id=practice.pk, user_ids=created_ids | touched, reason="membership")
        self.advance(len(staff))

    def patients(self, practice: Practice, records: list[PatientRecord]) -> None:
        tally = self.summary.patients
        existing = {p.account_number: p for p in Patient.objects.filter(practice=practice)}
        fields = ["first_name", "last_name", "preferred_pronoun", "date_of_birth", "email"]
        for chunk in _chunks(records, BATCH):
            new, changed = [], []
            for record in chunk:
                patient = existing.get(record.account_number)
                if patient is None:
                    patient = Patient(practice=practice, account_number=record.account_number)
                    new.append(patient)
                elif all(getattr(patient, name) == getattr(record, name) for name in fields):
                    tally.unchanged += 1
                    continue
                else:
                    changed.append(patient)
                for name in fields:
                    setattr(patient, name, getattr(record, name))
                patient.refresh_search_columns()  # bulk writes bypass Patient.save()
            Patient.objects.bulk_create(new, batch_size=BATCH)
            _update_rows(Patient, [*fields, "search_name", "search_account"], changed)
            tally.created += len(new)
            tally.updated += len(changed)
            if new or changed:
                self.changed_practices.add(practice.pk)
            self.advance(len(chunk))


def apply_directory(
    practices: list[PracticeRecord], *, source: str, advance: Callable[[int], None] = lambda n: None
) -> ImportSummary:
    """Makes the database say what the records say; records not in the file are left alone."""
    summary = ImportSummary()
    writer = _Writer(summary, advance)
    people: dict[str, StaffRecord] = {}
    for record in practices:
        for person in record.staff:
            people.setdefault(person.username, person)
    with transaction.atomic():
        by_key = writer.practices(practices)
        user_ids = writer.users(people)
        for record in practices:
            practice = by_key[record.key]
            if record.settings is not None:
                writer.settings(practice, record.settings)
            writer.memberships(practice, record.staff, user_ids)
            writer.patients(practice, record.patients)
        for practice_id in sorted(writer.changed_practices):
            audit.record(
                operation="importDirectory",
                action=AuditAction.UPDATE,
                practice=practice_id,
                via=AccessSource.ADMIN,
                detail={"source": source},
            )
    return summary
