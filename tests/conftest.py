"""Shared fixtures: a small world of two practices with one user or patient per role."""

from __future__ import annotations

import datetime as dt
import gc
import sys
from dataclasses import dataclass

import pytest

from core.models import (
    PORTAL_SETTING,
    WORKBENCH_SETTING,
    Conversation,
    Mailbox,
    MailboxSubscription,
    Membership,
    Patient,
    PermissionGrant,
    Practice,
    PracticePermission,
    PracticeSetting,
    Role,
    User,
)
from tests import processes


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        # An xdist worker ends with the run that started it: killed with it, not left running its test (and holding
        # its database) until it notices, between two tests, that nobody listens.
        processes.die_with_parent()


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session):
    """After every fixture's teardown, nothing the session started should still run: what does is stopped (a leak
    of a test, reported here) so that it cannot hold the test database in the next run."""
    try:
        return (yield)
    finally:
        # The xdist controller's children are its workers, which end on their own.
        controller = session.config.pluginmanager.has_plugin("dsession") and not hasattr(session.config, "workerinput")
        for leftover in processes.reap_leftovers(children=not controller):
            print(f"\ntests/conftest.py: stopped a process left running by the session: {leftover}", file=sys.stderr)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, django_db_blocker):
    """Before the test databases are created (dropped first if a run left one), connections still open to them are
    ended: a leftover test database held by a stale connection (a process of an earlier run that was killed)
    would otherwise make its drop, and so the run, fail with "database is being accessed by other users"."""
    from django.db import connections

    for alias in connections:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        name = connection.creation._get_test_db_name()
        with django_db_blocker.unblock(), connection.creation._nodb_cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )


def make_user(username: str, practice: Practice, role: Role = Role.STAFF, **extra) -> User:
    user = User.objects.filter(username=username).first() or User.objects.create_user(
        username=username, password="correct-horse-battery", full_name=username.replace("_", " ").title()
    )
    Membership.objects.create(user=user, practice=practice, role=role, is_clinician=extra.get("is_clinician", False))
    if extra.get("mailbox_admin"):
        membership = Membership.objects.get(user=user, practice=practice)
        PermissionGrant.objects.create(membership=membership, permission=PracticePermission.MAILBOX_ADMIN_PERMISSION)
    return user


def make_practice(key: str, name: str, *, enabled: bool = True) -> Practice:
    practice = Practice.objects.create(key=key, name=name)
    value = "T" if enabled else "F"
    PracticeSetting.objects.create(practice=practice, key=WORKBENCH_SETTING, value=value)
    PracticeSetting.objects.create(practice=practice, key=PORTAL_SETTING, value=value)
    return practice


def make_patient(practice: Practice, account: str, first: str, last: str, dob=dt.date(1980, 4, 2)) -> Patient:
    return Patient.objects.create(
        practice=practice,
        account_number=account,
        first_name=first,
        last_name=last,
        preferred_pronoun="she/her",
        date_of_birth=dob,
    )


@dataclass
class World:
    practice: Practice
    other_practice: Practice
    owner: User
    administrator: User
    mailbox_admin: User
    subscriber: User
    staff: User  # member, not subscribed to anything
    clinician: User
    outsider: User  # staff of the other practice only
    patient: Patient
    other_patient: Patient  # same practice, different patient
    outside_patient: Patient  # patient of the other practice
    billing: Mailbox
    scheduling: Mailbox
    outside_mailbox: Mailbox
    conversation: Conversation  # billing × patient


@pytest.fixture
def world(db) -> World:
    practice = make_practice("north", "North Clinic")
    other = make_practice("south", "South Clinic")
    owner = make_user("olivia_owner", practice, Role.OWNER)
    administrator = make_user("adam_admin", practice, Role.ADMINISTRATOR)
    mailbox_admin = make_user("mia_mailboxadmin", practice, mailbox_admin=True)
    subscriber = make_user("sam_subscriber", practice)
    staff = make_user("stan_staff", practice)
    clinician = make_user("dr_patel", practice, is_clinician=True)
    outsider = make_user("oscar_outsider", other, Role.OWNER, mailbox_admin=True)
    patient = make_patient(practice, "A-1001", "María", "García")
    other_patient = make_patient(practice, "A-1002", "John", "Smith", dt.date(1975, 12, 1))
    outside_patient = make_patient(other, "A-1001", "Zoë", "Outside")
    billing = Mailbox.objects.create(practice=practice, name="Billing")
    scheduling = Mailbox.objects.create(practice=practice, name="Scheduling")
    outside_mailbox = Mailbox.objects.create(practice=other, name="Billing")
    for user in (subscriber, mailbox_admin):
        MailboxSubscription.objects.create(mailbox=billing, user=user)
    MailboxSubscription.objects.create(mailbox=outside_mailbox, user=outsider)
    from django.utils import timezone

    conversation = Conversation.objects.create(
        practice=practice, mailbox=billing, patient=patient, last_activity_at=timezone.now()
    )
    return World(
        practice=practice,
        other_practice=other,
        owner=owner,
        administrator=administrator,
        mailbox_admin=mailbox_admin,
        subscriber=subscriber,
        staff=staff,
        clinician=clinician,
        outsider=outsider,
        patient=patient,
        other_patient=other_patient,
        outside_patient=outside_patient,
        billing=billing,
        scheduling=scheduling,
        outside_mailbox=outside_mailbox,
        conversation=conversation,
    )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    """Each test starts with unused rate-limit counters, without flushing a cache other runs share."""
    import uuid

    settings.RATE_LIMIT_NAMESPACE = f"rl-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _arranging_is_not_rate_limited():
    """A test arranges its data by calling actions directly (outside any request): a trusted caller. Requests it
    makes are limited as always (tests/security/test_rate_limits.py)."""
    from core import ratelimit

    with ratelimit.exempt():
        yield


@pytest.fixture
def cyclic_garbage():
    """`cyclic_garbage()`: the objects the collector found unreachable since the last call (kept, not freed)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)

    def found() -> list:
        gc.collect()
        unreachable = list(gc.garbage)
        gc.garbage.clear()
        return unreachable

    try:
        yield found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
