"""The domain rules of SPEC §2 through `core.actions`: switches, roles, mailbox lifecycle, subscriptions,
conversations, message rules, read state and unread counts, and what every action writes (or, refused, does not)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from core import actions
from core.errors import DomainError, ErrorCode
from core.models import (
    PORTAL_SETTING,
    WORKBENCH_SETTING,
    AccessSource,
    AuditEvent,
    Conversation,
    ConversationStatus,
    Event,
    EventKind,
    Mailbox,
    MailboxSubscription,
    Message,
    PermissionGrant,
    PracticePermission,
    PracticeSetting,
    ReadState,
)
from core.viewer_facts import annotate_conversations
from permissions import has_permission, membership_of

ADMIN = PracticePermission.MAILBOX_ADMIN_PERMISSION
Action = Callable[[object], object]


def row_counts() -> dict[str, int]:
    models = (
        Message,
        Event,
        AuditEvent,
        Conversation,
        Mailbox,
        MailboxSubscription,
        PermissionGrant,
        PracticeSetting,
        ReadState,
    )
    return {model.__name__: model.objects.count() for model in models}


def refused_without_writes(call: Callable[[], object]) -> ErrorCode:
    """Runs a call that must be refused; returns its code after checking that nothing was written."""
    before = row_counts()
    with pytest.raises(DomainError) as refused:
        call()
    assert row_counts() == before
    return refused.value.code


def switch(practice, key: str, on: bool) -> None:
    PracticeSetting.objects.filter(practice=practice, key=key).update(value="T" if on else "F")


def subscribers(mailbox) -> set:
    return set(MailboxSubscription.objects.filter(mailbox=mailbox).values_list("user__username", flat=True))


# ---- feature switches -----------------------------------------------------------------------------

MAILBOX_ADMIN_OPERATIONS: dict[str, Callable[[object, object], object]] = {
    "create": lambda w, admin: actions.create_mailbox(acting_user=admin, practice_id=w.practice.pk, name="Lab"),
    "rename": lambda w, admin: actions.rename_mailbox(acting_user=admin, mailbox_id=w.billing.pk, name="Bills"),
    "deactivate": lambda w, admin: actions.deactivate_mailbox(acting_user=admin, mailbox_id=w.billing.pk),
    "activate": lambda w, admin: actions.activate_mailbox(acting_user=admin, mailbox_id=w.billing.pk),
    "delete": lambda w, admin: actions.delete_mailbox(acting_user=admin, mailbox_id=w.scheduling.pk),
    "set_subscribers": lambda w, admin: actions.set_mailbox_subscribers(
        acting_user=admin, mailbox_id=w.billing.pk, user_ids=[w.staff.pk]
    ),
    "set_user_access": lambda w, admin: actions.set_user_mailbox_access(
        acting_user=admin, user_id=w.staff.pk, practice_id=w.practice.pk, all_mailboxes=True
    ),
}


def _by_mailbox_admin(operation: Callable[[object, object], object], w) -> object:
    return operation(w, w.mailbox_admin)


STAFF_MAILBOX_OPERATIONS: dict[str, Action] = {
    **{name: partial(_by_mailbox_admin, operation) for name, operation in MAILBOX_ADMIN_OPERATIONS.items()},
    "subscribe": lambda w: actions.subscribe_to_mailbox(acting_user=w.staff, mailbox_id=w.billing.pk),
    "unsubscribe": lambda w: actions.unsubscribe_from_mailbox(acting_user=w.subscriber, mailbox_id=w.billing.pk),
    "set_subscribers": lambda w: actions.set_mailbox_subscribers(
        acting_user=w.mailbox_admin, mailbox_id=w.billing.pk, user_ids=[w.staff.pk]
    ),
    "set_user_access": lambda w: actions.set_user_mailbox_access(
        acting_user=w.mailbox_admin, user_id=w.staff.pk, practice_id=w.practice.pk, all_mailboxes=True
    ),
    "start": lambda w: actions.start_conversation(
        acting_user=w.subscriber, mailbox_id=w.billing.pk, patient_id=w.other_patient.pk
    ),
    "start_from_chart": lambda w: actions.start_conversation(
        acting_user=w.staff, mailbox_id=w.billing.pk, patient_id=w.other_patient.pk, via="CHART_SUMMARY"
    ),
    "send": lambda w: actions.send_staff_message(
        acting_user=w.subscriber, conversation_id=w.conversation.pk, body="Hi"
    ),
    "send_from_chart": lambda w: actions.send_staff_message(
        acting_user=w.staff, conversation_id=w.conversation.pk, body="Hi", via="CHART_SUMMARY"
    ),
    "archive": lambda w: actions.archive_conversation(acting_user=w.subscriber, conversation_id=w.conversation.pk),
    "unarchive": lambda w: actions.unarchive_conversation(acting_user=w.subscriber, conversation_id=w.conversation.pk),
    "mark_read": lambda w: actions.mark_conversation_read(acting_user=w.subscriber, conversation_id=w.conversation.pk),
}


@pytest.mark.parametrize("operation", STAFF_MAILBOX_OPERATIONS.values(), ids=STAFF_MAILBOX_OPERATIONS.keys())
def test_workbench_switch_off_refuses_every_staff_mailbox_operation(world, operation):
    switch(world.practice, WORKBENCH_SETTING, False)

    code = refused_without_writes(lambda: operation(world))

    assert code == ErrorCode.FEATURE_DISABLED


def test_workbench_switch_defaults_to_off(world):
    PracticeSetting.objects.filter(practice=world.practice, key=WORKBENCH_SETTING).delete()

    code = refused_without_writes(lambda: STAFF_MAILBOX_OPERATIONS["create"](world))

    assert code == ErrorCode.FEATURE_DISABLED


def test_portal_switch_off_refuses_patient_messages(world):
    switch(world.practice, PORTAL_SETTING, False)

    code = refused_without_writes(
        lambda: actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hi")
    )

    assert code == ErrorCode.FEATURE_DISABLED


def test_each_switch_governs_only_its_own_side(world):
    switch(world.practice, WORKBENCH_SETTING, False)
    from_patient = actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hi")
    switch(world.practice, WORKBENCH_SETTING, True)
    switch(world.practice, PORTAL_SETTING, False)

    to_patient = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hello"
    )

    assert (from_patient.sequence, to_patient.sequence) == (1, 2)


def test_settings_and_permissions_stay_manageable_with_both_switches_off(world):
    switch(world.practice, WORKBENCH_SETTING, False)
    switch(world.practice, PORTAL_SETTING, False)

    actions.grant_permission(
        acting_user=world.owner, practice_id=world.practice.pk, user_id=world.staff.pk, permission=ADMIN
    )
    actions.revoke_permission(
        acting_user=world.administrator, practice_id=world.practice.pk, user_id=world.mailbox_admin.pk, permission=ADMIN
    )
    actions.set_practice_setting(
        acting_user=world.owner, practice_id=world.practice.pk, key=WORKBENCH_SETTING, value="T"
    )

    assert has_permission(membership_of(world.staff, world.practice.pk), ADMIN)
    assert not has_permission(membership_of(world.mailbox_admin, world.practice.pk), ADMIN)
    mailbox = actions.create_mailbox(acting_user=world.staff, practice_id=world.practice.pk, name="Lab")
    assert mailbox.name == "Lab"


# ---- owners and administrators ----------------------------------------------------------------------

PRACTICE_ADMIN_OPERATIONS: dict[str, Callable[[object, object], object]] = {
    "grant": lambda w, user: actions.grant_permission(
        acting_user=user, practice_id=w.practice.pk, user_id=w.staff.pk, permission=ADMIN
    ),
    "revoke": lambda w, user: actions.revoke_permission(
        acting_user=user, practice_id=w.practice.pk, user_id=w.mailbox_admin.pk, permission=ADMIN
    ),
    "set_setting": lambda w, user: actions.set_practice_setting(
        acting_user=user, practice_id=w.practice.pk, key="ui.theme", value="dark"
    ),
}


@pytest.mark.parametrize("operation", PRACTICE_ADMIN_OPERATIONS.values(), ids=PRACTICE_ADMIN_OPERATIONS.keys())
@pytest.mark.parametrize("who", ["mailbox_admin", "subscriber", "clinician"])
def test_only_owners_and_administrators_manage_permissions_and_settings(world, operation, who):
    code = refused_without_writes(lambda: operation(world, getattr(world, who)))

    assert code == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("operation", PRACTICE_ADMIN_OPERATIONS.values(), ids=PRACTICE_ADMIN_OPERATIONS.keys())
def test_owner_of_another_practice_finds_nothing_to_manage(world, operation):
    code = refused_without_writes(lambda: operation(world, world.outsider))

    assert code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize("who", ["owner", "administrator"])
def test_owners_and_administrators_grant_revoke_and_set(world, who):
    admin = getattr(world, who)

    actions.grant_permission(acting_user=admin, practice_id=world.practice.pk, user_id=world.staff.pk, permission=ADMIN)
    actions.revoke_permission(
        acting_user=admin, practice_id=world.practice.pk, user_id=world.mailbox_admin.pk, permission=ADMIN
    )
    setting = actions.set_practice_setting(acting_user=admin, practice_id=world.practice.pk, key=" ui.x ", value=" T ")

    assert has_permission(membership_of(world.staff, world.practice.pk), ADMIN)
    assert not has_permission(membership_of(world.mailbox_admin, world.practice.pk), ADMIN)
    assert (setting.key, setting.value) == ("ui.x", "T")


def test_granting_to_a_user_of_another_practice_is_not_found(world):
    code = refused_without_writes(
        lambda: actions.grant_permission(
            acting_user=world.owner, practice_id=world.practice.pk, user_id=world.outsider.pk, permission=ADMIN
        )
    )

    assert code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "call",
    [
        lambda w: actions.grant_permission(
            acting_user=w.owner, practice_id=w.practice.pk, user_id=w.staff.pk, permission="ROOT"
        ),
        lambda w: actions.set_practice_setting(
            acting_user=w.owner, practice_id=w.practice.pk, key="has space", value="T"
        ),
        lambda w: actions.set_practice_setting(acting_user=w.owner, practice_id=w.practice.pk, key="", value="T"),
        lambda w: actions.set_practice_setting(
            acting_user=w.owner, practice_id=w.practice.pk, key="k", value="v" * 1001
        ),
    ],
    ids=["unknown permission", "key with space", "empty key", "long value"],
)
def test_invalid_permission_or_setting_is_a_validation_error(world, call):
    code = refused_without_writes(lambda: call(world))

    assert code == ErrorCode.VALIDATION_ERROR


def test_non_admin_is_forbidden_before_their_input_is_judged(world):
    with pytest.raises(DomainError) as refused:
        actions.set_practice_setting(acting_user=world.staff, practice_id=world.practice.pk, key="bad key", value="T")
    assert refused.value.code == ErrorCode.FORBIDDEN


def test_setting_an_unchanged_value_writes_no_audit_row(world):
    from core.models import WORKBENCH_SETTING, AuditEvent

    before = AuditEvent.objects.count()
    actions.set_practice_setting(
        acting_user=world.owner, practice_id=world.practice.pk, key=WORKBENCH_SETTING, value="T"
    )
    assert AuditEvent.objects.count() == before


# ---- mailbox admins -------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", MAILBOX_ADMIN_OPERATIONS.values(), ids=MAILBOX_ADMIN_OPERATIONS.keys())
@pytest.mark.parametrize("who", ["owner", "subscriber", "clinician"])
def test_only_mailbox_admins_set_mailboxes_up(world, operation, who):
    code = refused_without_writes(lambda: operation(world, getattr(world, who)))

    assert code == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("operation", MAILBOX_ADMIN_OPERATIONS.values(), ids=MAILBOX_ADMIN_OPERATIONS.keys())
def test_mailbox_admin_of_another_practice_finds_nothing(world, operation):
    code = refused_without_writes(lambda: operation(world, world.outsider))

    assert code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize("name", ["", "   ", "\n\t", "x" * 101], ids=["empty", "spaces", "whitespace", "101 chars"])
def test_mailbox_names_must_be_1_to_100_characters(world, name):
    code = refused_without_writes(
        lambda: actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name=name)
    )
    renamed = refused_without_writes(
        lambda: actions.rename_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, name=name)
    )

    assert code == renamed == ErrorCode.VALIDATION_ERROR


def test_mailbox_names_are_trimmed_and_may_be_100_characters(world):
    trimmed = actions.create_mailbox(
        acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="  Lab  Results "
    )
    longest = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="y" * 100)

    assert trimmed.name == "Lab Results"
    assert len(longest.name) == 100


def test_a_deactivated_mailbox_still_holds_its_name(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk)

    code = refused_without_writes(
        lambda: actions.rename_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, name="scheduling")
    )

    assert code == ErrorCode.DUPLICATE_NAME


def test_renaming_a_mailbox_to_another_case_of_its_own_name_is_allowed(world):
    mailbox = actions.rename_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, name="BILLING")

    assert mailbox.name == "BILLING"


def test_the_same_name_may_exist_in_another_practice(world):
    mailbox = actions.create_mailbox(acting_user=world.outsider, practice_id=world.other_practice.pk, name="Scheduling")

    assert mailbox.practice_id == world.other_practice.pk


def test_mailbox_names_are_unique_ignoring_case(world):
    with pytest.raises(DomainError) as refused:
        actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="  BILLING ")
    assert refused.value.code == ErrorCode.DUPLICATE_NAME


def test_other_practice_mailbox_is_not_found(world):
    with pytest.raises(DomainError) as refused:
        actions.rename_mailbox(acting_user=world.outsider, mailbox_id=world.billing.pk, name="Mine")
    assert refused.value.code == ErrorCode.NOT_FOUND


def test_mailbox_with_conversations_cannot_be_deleted(world):
    with pytest.raises(DomainError) as refused:
        actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    assert refused.value.code == ErrorCode.MAILBOX_NOT_EMPTY
    assert (
        actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk) == world.scheduling.pk
    )


# ---- subscriptions --------------------------------------------------------------------------------


def test_any_member_subscribes_and_unsubscribes_themselves(world):
    actions.subscribe_to_mailbox(acting_user=world.clinician, mailbox_id=world.scheduling.pk)
    actions.subscribe_to_mailbox(acting_user=world.clinician, mailbox_id=world.scheduling.pk)
    assert subscribers(world.scheduling) == {"dr_patel"}

    actions.unsubscribe_from_mailbox(acting_user=world.clinician, mailbox_id=world.scheduling.pk)

    assert subscribers(world.scheduling) == set()
    assert AuditEvent.objects.filter(operation="subscribeToMailbox").count() == 1


def test_subscribing_to_a_deactivated_mailbox_is_refused(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk)

    code = refused_without_writes(
        lambda: actions.subscribe_to_mailbox(acting_user=world.staff, mailbox_id=world.scheduling.pk)
    )

    assert code == ErrorCode.MAILBOX_DEACTIVATED


def test_subscribing_to_a_mailbox_of_another_practice_is_not_found(world):
    code = refused_without_writes(
        lambda: actions.subscribe_to_mailbox(acting_user=world.staff, mailbox_id=world.outside_mailbox.pk)
    )

    assert code == ErrorCode.NOT_FOUND


def test_set_mailbox_subscribers_replaces_the_set(world):
    actions.set_mailbox_subscribers(
        acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, user_ids=[world.staff.pk, world.clinician.pk]
    )

    assert subscribers(world.billing) == {"stan_staff", "dr_patel"}
    event = Event.objects.get(kind=EventKind.SUBSCRIPTIONS_CHANGED)
    changed = {world.staff.pk, world.clinician.pk, world.subscriber.pk, world.mailbox_admin.pk}
    assert set(event.user_ids) == changed


def test_set_mailbox_subscribers_refuses_users_of_another_practice(world):
    code = refused_without_writes(
        lambda: actions.set_mailbox_subscribers(
            acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, user_ids=[world.staff.pk, world.outsider.pk]
        )
    )

    assert code == ErrorCode.NOT_FOUND


def test_user_mailbox_access_all_then_chosen_then_none(world):
    def access(**choice) -> set[str]:
        actions.set_user_mailbox_access(
            acting_user=world.mailbox_admin, user_id=world.staff.pk, practice_id=world.practice.pk, **choice
        )
        return set(MailboxSubscription.objects.filter(user=world.staff).values_list("mailbox__name", flat=True))

    assert access(all_mailboxes=True) == {"Billing", "Scheduling"}
    assert access(mailbox_ids=[world.scheduling.pk]) == {"Scheduling"}
    assert access(all_mailboxes=False) == set()
    assert subscribers(world.billing) == {"sam_subscriber", "mia_mailboxadmin"}


@pytest.mark.parametrize(
    ("choice", "code"),
    [
        (lambda w: {}, ErrorCode.VALIDATION_ERROR),
        (lambda w: {"mailbox_ids": [w.billing.pk, w.outside_mailbox.pk]}, ErrorCode.NOT_FOUND),
    ],
    ids=["no choice", "mailbox of another practice"],
)
def test_user_mailbox_access_refuses_bad_choices(world, choice, code):
    refused = refused_without_writes(
        lambda: actions.set_user_mailbox_access(
            acting_user=world.mailbox_admin, user_id=world.staff.pk, practice_id=world.practice.pk, **choice(world)
        )
    )

    assert refused == code


def test_user_mailbox_access_for_a_user_of_another_practice_is_not_found(world):
    code = refused_without_writes(
        lambda: actions.set_user_mailbox_access(
            acting_user=world.mailbox_admin,
            user_id=world.outsider.pk,
            practice_id=world.practice.pk,
            all_mailboxes=True,
        )
    )

    assert code == ErrorCode.NOT_FOUND


def test_all_mailboxes_access_subscribes_active_ones_and_keeps_deactivated_subscriptions(world):
    # given a deactivated mailbox the user was subscribed to, and one they were not
    old = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Old")
    kept = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Kept")
    actions.set_mailbox_subscribers(acting_user=world.mailbox_admin, mailbox_id=kept.pk, user_ids=[world.staff.pk])
    for mailbox in (old, kept):
        actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=mailbox.pk)
    # when an admin subscribes the user to all mailboxes of the practice
    actions.set_user_mailbox_access(
        acting_user=world.mailbox_admin, user_id=world.staff.pk, practice_id=world.practice.pk, all_mailboxes=True
    )
    # then every active mailbox and the kept deactivated one, never the other deactivated one
    subscribed = set(MailboxSubscription.objects.filter(user=world.staff).values_list("mailbox__name", flat=True))
    assert subscribed == {"Billing", "Scheduling", "Kept"}


def test_nobody_is_newly_subscribed_to_a_deactivated_mailbox(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk)
    with pytest.raises(DomainError) as by_access_page:
        actions.set_user_mailbox_access(
            acting_user=world.mailbox_admin,
            user_id=world.staff.pk,
            practice_id=world.practice.pk,
            mailbox_ids=[world.scheduling.pk],
        )
    with pytest.raises(DomainError) as by_subscriber_list:
        actions.set_mailbox_subscribers(
            acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk, user_ids=[world.staff.pk]
        )
    assert by_access_page.value.code == by_subscriber_list.value.code == ErrorCode.MAILBOX_DEACTIVATED
    assert not MailboxSubscription.objects.filter(user=world.staff).exists()


# ---- deactivated mailboxes ------------------------------------------------------------------------

DEACTIVATED_REFUSALS: dict[str, Action] = {
    "start": lambda w: actions.start_conversation(
        acting_user=w.subscriber, mailbox_id=w.billing.pk, patient_id=w.other_patient.pk
    ),
    "start_from_chart": lambda w: actions.start_conversation(
        acting_user=w.staff, mailbox_id=w.billing.pk, patient_id=w.other_patient.pk, via="CHART_SUMMARY"
    ),
    "send": STAFF_MAILBOX_OPERATIONS["send"],
    "send_from_chart": STAFF_MAILBOX_OPERATIONS["send_from_chart"],
    "patient_send": lambda w: actions.send_patient_message(acting_patient=w.patient, mailbox_id=w.billing.pk, body="?"),
    "patient_first_send": lambda w: actions.send_patient_message(
        acting_patient=w.other_patient, mailbox_id=w.billing.pk, body="?"
    ),
    "archive": STAFF_MAILBOX_OPERATIONS["archive"],
}


@pytest.mark.parametrize("operation", DEACTIVATED_REFUSALS.values(), ids=DEACTIVATED_REFUSALS.keys())
def test_a_deactivated_mailbox_takes_no_new_conversations_or_messages(world, operation):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)

    code = refused_without_writes(lambda: operation(world))

    assert code == ErrorCode.MAILBOX_DEACTIVATED


def test_a_deactivated_mailbox_history_stays_readable_from_the_chart(world):
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Question")
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)

    conversation = actions.mark_conversation_read(
        acting_user=world.staff, conversation_id=world.conversation.pk, via="CHART_SUMMARY"
    )

    assert conversation.pk == world.conversation.pk
    assert ReadState.objects.get(user=world.staff).last_read_sequence == 1


def test_activating_restores_the_mailbox_as_it_was(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)

    actions.activate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)

    assert subscribers(world.billing) == {"sam_subscriber", "mia_mailboxadmin"}
    message = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Back"
    )
    assert message.sequence == 1
    kinds = list(Event.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == [EventKind.MAILBOX_DEACTIVATED, EventKind.MAILBOX_ACTIVATED, EventKind.MESSAGE_ADDED]


def test_deactivating_twice_changes_nothing_the_second_time(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    before = row_counts()

    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)

    assert row_counts() == before


# ---- conversations --------------------------------------------------------------------------------


def test_archive_and_unarchive_change_the_status_for_everyone(world):
    archived = actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    assert archived.status == ConversationStatus.ARCHIVED
    assert Conversation.objects.get(pk=world.conversation.pk).status == ConversationStatus.ARCHIVED

    actions.unarchive_conversation(acting_user=world.mailbox_admin, conversation_id=world.conversation.pk)

    assert Conversation.objects.get(pk=world.conversation.pk).status == ConversationStatus.ACTIVE


def test_staff_message_reactivates_an_archived_conversation(world):
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)

    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="One more")

    assert Conversation.objects.get(pk=world.conversation.pk).status == ConversationStatus.ACTIVE


def test_patient_message_reactivates_an_archived_conversation(world):
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    world.conversation.refresh_from_db()
    assert world.conversation.status == ConversationStatus.ARCHIVED
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Still there?")
    world.conversation.refresh_from_db()
    assert world.conversation.status == ConversationStatus.ACTIVE
    kinds = list(Event.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == [
        EventKind.CONVERSATION_ARCHIVED,
        EventKind.CONVERSATION_REACTIVATED,
        EventKind.MESSAGE_ADDED,
    ]


def test_only_subscribers_archive(world):
    code = refused_without_writes(
        lambda: actions.archive_conversation(acting_user=world.staff, conversation_id=world.conversation.pk)
    )

    assert code == ErrorCode.NOT_SUBSCRIBED


def test_starting_an_existing_conversation_returns_it(world):
    first = actions.start_conversation(
        acting_user=world.subscriber, mailbox_id=world.billing.pk, patient_id=world.other_patient.pk
    )
    before = row_counts()

    again = actions.start_conversation(
        acting_user=world.staff, mailbox_id=world.billing.pk, patient_id=world.other_patient.pk, via="CHART_SUMMARY"
    )

    assert again.pk == first.pk
    assert row_counts() == before


def test_starting_a_conversation_with_a_patient_of_another_practice_is_not_found(world):
    code = refused_without_writes(
        lambda: actions.start_conversation(
            acting_user=world.subscriber, mailbox_id=world.billing.pk, patient_id=world.outside_patient.pk
        )
    )

    assert code == ErrorCode.NOT_FOUND


def test_unsubscribed_staff_is_refused_in_mailbox_view_but_may_use_the_chart(world):
    with pytest.raises(DomainError) as refused:
        actions.send_staff_message(acting_user=world.staff, conversation_id=world.conversation.pk, body="Hi")
    assert refused.value.code == ErrorCode.NOT_SUBSCRIBED
    message = actions.send_staff_message(
        acting_user=world.staff, conversation_id=world.conversation.pk, body="Hi", via=AccessSource.CHART_SUMMARY
    )
    assert message.sequence == 1


def test_patient_of_another_practice_cannot_write_to_this_practice(world):
    code = refused_without_writes(
        lambda: actions.send_patient_message(
            acting_patient=world.outside_patient, mailbox_id=world.billing.pk, body="?"
        )
    )

    assert code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "body", ["", "   ", " \n\t ", None, "x" * 20_001], ids=["empty", "spaces", "blank", "none", "long"]
)
def test_message_bodies_must_hold_1_to_20000_characters(world, body):
    staff = refused_without_writes(
        lambda: actions.send_staff_message(
            acting_user=world.subscriber, conversation_id=world.conversation.pk, body=body
        )
    )
    patient = refused_without_writes(
        lambda: actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body=body)
    )

    assert staff == patient == ErrorCode.VALIDATION_ERROR


def test_message_bodies_are_trimmed_and_may_be_20000_characters(world):
    longest = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body=" " + "x" * 20_000 + "\n"
    )

    assert len(longest.body) == 20_000


def test_sending_twice_numbers_messages_without_gaps(world):
    first = actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi")
    second = actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hello")
    assert (first.sequence, second.sequence) == (1, 2)
    assert second.conversation_id == world.conversation.pk


def test_repeated_client_message_id_returns_the_first_message(world):
    one = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi", client_message_id="c-1"
    )
    again = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi!", client_message_id="c-1"
    )
    assert again.pk == one.pk
    assert Message.objects.count() == 1


def test_the_same_client_message_id_from_another_sender_is_a_new_message(world):
    one = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi", client_message_id="c-1"
    )
    two = actions.send_staff_message(
        acting_user=world.mailbox_admin, conversation_id=world.conversation.pk, body="Hi", client_message_id="c-1"
    )
    three = actions.send_patient_message(
        acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hi", client_message_id="c-1"
    )
    again = actions.send_patient_message(
        acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hi", client_message_id="c-1"
    )

    assert [m.sequence for m in (one, two, three)] == [1, 2, 3]
    assert again.pk == three.pk


# ---- read state -----------------------------------------------------------------------------------


def unread(world, user) -> int:
    conversation = annotate_conversations(Conversation.objects.filter(pk=world.conversation.pk), user).get()
    return conversation.unread_count


def test_messages_from_the_patient_are_unread_until_marked_read(world):
    for body in ("One", "Two"):
        actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body=body)
    assert unread(world, world.subscriber) == 2

    actions.mark_conversation_read(acting_user=world.subscriber, conversation_id=world.conversation.pk)

    assert ReadState.objects.get(user=world.subscriber, conversation=world.conversation).last_read_sequence == 2
    assert unread(world, world.subscriber) == 0
    assert unread(world, world.mailbox_admin) == 2
    event = Event.objects.get(kind=EventKind.CONVERSATION_READ)
    assert event.user_ids == [world.subscriber.pk]


def test_marking_read_again_writes_nothing(world):
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="One")
    actions.mark_conversation_read(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    before = row_counts()

    actions.mark_conversation_read(acting_user=world.subscriber, conversation_id=world.conversation.pk)

    assert row_counts() == before


def test_a_staff_reply_marks_the_thread_read_for_its_sender(world):
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="One")

    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Answer")

    assert unread(world, world.subscriber) == 0


def test_unread_counts_come_from_counters_per_conversation_and_per_mailbox(world):
    # given two patients writing to Billing, three messages in all
    from core.models import Conversation, Mailbox
    from core.viewer_facts import annotate_conversations, annotate_mailboxes

    for patient, body in ((world.patient, "one"), (world.patient, "two"), (world.other_patient, "three")):
        actions.send_patient_message(acting_patient=patient, mailbox_id=world.billing.pk, body=body)

    def unread() -> tuple[int, dict[int, int]]:
        mailbox = annotate_mailboxes(Mailbox.objects.filter(pk=world.billing.pk), world.subscriber).get()
        threads = annotate_conversations(Conversation.objects.filter(mailbox=world.billing), world.subscriber)
        return mailbox.unread_count, {c.patient_id: c.unread_count for c in threads}

    assert unread() == (3, {world.patient.pk: 2, world.other_patient.pk: 1})
    # when the subscriber reads one thread, then answers the other (a send marks it read for the sender)
    actions.mark_conversation_read(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    assert unread() == (1, {world.patient.pk: 0, world.other_patient.pk: 1})
    other = Conversation.objects.get(patient=world.other_patient)
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=other.pk, body="On it")
    # then nothing is unread for them, while a colleague still has all three
    assert unread() == (0, {world.patient.pk: 0, world.other_patient.pk: 0})
    colleague = annotate_mailboxes(Mailbox.objects.filter(pk=world.billing.pk), world.mailbox_admin).get()
    assert colleague.unread_count == 3


# ---- what every action writes ---------------------------------------------------------------------


def _deactivate_scheduling(w) -> None:
    actions.deactivate_mailbox(acting_user=w.mailbox_admin, mailbox_id=w.scheduling.pk)


def _archive(w) -> None:
    actions.archive_conversation(acting_user=w.subscriber, conversation_id=w.conversation.pk)


K = EventKind
WRITES = [
    # (given, action, audited operation, event kinds)
    (None, STAFF_MAILBOX_OPERATIONS["create"], "createMailbox", [K.MAILBOX_CREATED]),
    (None, STAFF_MAILBOX_OPERATIONS["rename"], "renameMailbox", [K.MAILBOX_RENAMED]),
    (None, STAFF_MAILBOX_OPERATIONS["deactivate"], "deactivateMailbox", [K.MAILBOX_DEACTIVATED]),
    (
        _deactivate_scheduling,
        lambda w: actions.activate_mailbox(acting_user=w.mailbox_admin, mailbox_id=w.scheduling.pk),
        "activateMailbox",
        [K.MAILBOX_ACTIVATED],
    ),
    (None, STAFF_MAILBOX_OPERATIONS["delete"], "deleteMailbox", [K.MAILBOX_DELETED]),
    (None, STAFF_MAILBOX_OPERATIONS["subscribe"], "subscribeToMailbox", [K.SUBSCRIPTIONS_CHANGED]),
    (None, STAFF_MAILBOX_OPERATIONS["unsubscribe"], "unsubscribeFromMailbox", [K.SUBSCRIPTIONS_CHANGED]),
    (None, STAFF_MAILBOX_OPERATIONS["set_subscribers"], "setMailboxSubscribers", [K.SUBSCRIPTIONS_CHANGED]),
    (
        None,
        STAFF_MAILBOX_OPERATIONS["set_user_access"],
        "setUserMailboxAccess",
        [K.SUBSCRIPTIONS_CHANGED, K.SUBSCRIPTIONS_CHANGED],
    ),
    (None, lambda w: PRACTICE_ADMIN_OPERATIONS["grant"](w, w.owner), "grantPermission", [K.ACCESS_CHANGED]),
    (None, lambda w: PRACTICE_ADMIN_OPERATIONS["revoke"](w, w.owner), "revokePermission", [K.ACCESS_CHANGED]),
    (None, lambda w: PRACTICE_ADMIN_OPERATIONS["set_setting"](w, w.owner), "setPracticeSetting", [K.ACCESS_CHANGED]),
    (None, STAFF_MAILBOX_OPERATIONS["start"], "startConversation", [K.CONVERSATION_STARTED]),
    (None, STAFF_MAILBOX_OPERATIONS["send"], "sendMessage", [K.MESSAGE_ADDED]),
    (None, DEACTIVATED_REFUSALS["patient_send"], "sendPortalMessage", [K.MESSAGE_ADDED]),
    (
        None,
        DEACTIVATED_REFUSALS["patient_first_send"],
        "sendPortalMessage",
        [K.CONVERSATION_STARTED, K.MESSAGE_ADDED],
    ),
    (None, STAFF_MAILBOX_OPERATIONS["archive"], "archiveConversation", [K.CONVERSATION_ARCHIVED]),
    (_archive, STAFF_MAILBOX_OPERATIONS["unarchive"], "unarchiveConversation", [K.CONVERSATION_REACTIVATED]),
]


@pytest.mark.parametrize(("given", "action", "operation", "kinds"), WRITES, ids=[w[2] for w in WRITES])
def test_every_action_writes_one_audit_row_and_its_events(world, given, action, operation, kinds):
    if given:
        given(world)
    last_audit = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    last_event = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    action(world)

    audits = list(AuditEvent.objects.filter(id__gt=last_audit).values_list("operation", "outcome"))
    assert audits == [(operation, "SUCCESS")]
    assert list(Event.objects.filter(id__gt=last_event).order_by("id").values_list("kind", flat=True)) == kinds
