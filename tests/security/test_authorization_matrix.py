"""Who may call what: every root query and mutation, for every role, from one table.

Each cell is either OK (an answer without errors) or the exact `extensions.code` of the refusal. The table
must cover every root field of the live schema: a new query or mutation without a row fails
`test_the_table_covers_every_root_field`. Subscriptions are refused at subscribe time over real WebSockets in
tests/live/*.py; this file checks that every subscription field is exercised there.

The world (tests/conftest.py): practice North with owner, administrator, a mailbox admin (subscribed to
Billing), a subscriber of Billing, a staff member subscribed to nothing; two of its patients (the first has
the Billing conversation); practice South with its owner (a mailbox admin too) and a patient.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.models import Conversation, Mailbox, Membership, Message, QuickReply, Role, User
from graph.schema import schema
from tests.graphql_client import Api, gid

OK = "OK"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
NOT_FOUND = "NOT_FOUND"
NOT_SUBSCRIBED = "NOT_SUBSCRIBED"

PATIENT_ROLES = ("patient", "other_patient", "outside_patient")
MEMBER_ROLES = ("staff", "subscriber", "mailbox_admin", "administrator", "owner")
ROLES = ("anonymous", *PATIENT_ROLES, "outsider", *MEMBER_ROLES)


def expect(
    *, anonymous=UNAUTHENTICATED, patients=FORBIDDEN, outsider=NOT_FOUND, members=OK, **overrides: str
) -> dict[str, str]:
    cells = {"anonymous": anonymous, "outsider": outsider}
    cells.update(dict.fromkeys(PATIENT_ROLES, patients))
    cells.update(dict.fromkeys(MEMBER_ROLES, members))
    unknown = set(overrides) - set(ROLES)
    assert not unknown, unknown
    cells.update(overrides)
    return cells


def mailbox_admins_only() -> dict[str, str]:
    return expect(members=FORBIDDEN, mailbox_admin=OK)


def practice_admins_only() -> dict[str, str]:
    return expect(members=FORBIDDEN, administrator=OK, owner=OK)


def subscribers_only() -> dict[str, str]:
    return expect(members=NOT_SUBSCRIBED, subscriber=OK, mailbox_admin=OK)


def patients_only(**overrides: str) -> dict[str, str]:
    return expect(patients=OK, outsider=FORBIDDEN, members=FORBIDDEN, **overrides)


@dataclass(frozen=True)
class Row:
    field: str
    document: str
    variables: Callable
    cells: dict[str, str]
    variant: str = ""

    @property
    def name(self) -> str:
        return f"{self.field}{'-' + self.variant if self.variant else ''}"


def _staff_message(w) -> Message:
    """A message the subscriber sent in the Billing conversation (the one to withdraw)."""
    message = Message.objects.filter(conversation=w.conversation, sender_user=w.subscriber).first()
    if message is None:
        from core import actions

        message = actions.send_staff_message(acting_user=w.subscriber, conversation_id=w.conversation.pk, body="Hi")
    return message


def ids(w) -> dict[str, str]:
    return {
        "message": gid("Message", _staff_message(w).pk),
        "practice": gid("Practice", w.practice.pk),
        "billing": gid("Mailbox", w.billing.pk),
        "scheduling": gid("Mailbox", w.scheduling.pk),
        "conversation": gid("Conversation", w.conversation.pk),
        "patient": gid("Patient", w.patient.pk),
        "other_patient": gid("Patient", w.other_patient.pk),
        "staff": gid("User", w.staff.pk),
        "subscriber": gid("User", w.subscriber.pk),
        "mailbox_admin": gid("User", w.mailbox_admin.pk),
        "quick_reply": gid("QuickReply", _quick_reply(w).pk),
    }


def _quick_reply(w) -> QuickReply:
    reply, _ = QuickReply.objects.get_or_create(
        practice=w.practice, title="Greeting", defaults={"body": "Hello from the North desk"}
    )
    return reply


MAILBOX = "id name status isSubscribed subscriberCount"
CONVERSATION = "id status mailbox { id name } patient { id fullName } messages(last: 5) { totalCount }"
MESSAGE = "id sequence direction body"

ROWS = [
    # ---- queries
    Row("me", "{ me { id username memberships { practice { id name } role } } }", lambda i: {}, expect(outsider=OK)),
    Row("practices", "{ practices { id name } }", lambda i: {}, expect(outsider=OK)),
    Row(
        "mailboxes",
        f"query($p: ID!) {{ mailboxes(practiceId: $p) {{ {MAILBOX} }} }}",
        lambda i: {"p": i["practice"]},
        expect(),
    ),
    Row("mailbox", f"query($m: ID!) {{ mailbox(id: $m) {{ {MAILBOX} }} }}", lambda i: {"m": i["billing"]}, expect()),
    Row(
        "conversation",
        f"query($c: ID!) {{ conversation(id: $c) {{ {CONVERSATION} }} }}",
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
        "mailbox-view",
    ),
    Row(
        "conversation",
        f"query($c: ID!) {{ conversation(id: $c, via: CHART_SUMMARY) {{ {CONVERSATION} }} }}",
        lambda i: {"c": i["conversation"]},
        expect(),
        "chart-summary",
    ),
    Row(
        "searchPatients",
        'query($p: ID!) { searchPatients(practiceId: $p, query: "garc") { id fullName } }',
        lambda i: {"p": i["practice"]},
        expect(),
    ),
    Row(
        "searchMessages",
        'query($p: ID!) { searchMessages(practiceId: $p, query: "hel") '
        "{ edges { node { id body } conversation { id } snippet { text highlighted } } } }",
        lambda i: {"p": i["practice"]},
        expect(),
        "subscribed-mailboxes",
    ),
    Row(
        "searchMessages",
        'query($p: ID!, $m: ID!) { searchMessages(practiceId: $p, query: "hel", mailboxId: $m) '
        "{ edges { node { id body } conversation { id } snippet { text highlighted } } } }",
        lambda i: {"p": i["practice"], "m": i["billing"]},
        subscribers_only(),
        "one-mailbox",
    ),
    Row(
        "patient",
        "query($x: ID!) { patient(id: $x) { id fullName conversations { id status } } }",
        lambda i: {"x": i["patient"]},
        expect(),
    ),
    Row(
        "userMailboxAccess",
        "query($u: ID!) { userMailboxAccess(userId: $u) "
        "{ practice { id } allMailboxes mailboxes { mailbox { id } subscribed } } }",
        lambda i: {"u": i["subscriber"]},
        mailbox_admins_only(),
    ),
    Row(
        "practiceUsers",
        "query($p: ID!) { practiceUsers(practiceId: $p) { user { id fullName } role permissions } }",
        lambda i: {"p": i["practice"]},
        expect(),
    ),
    Row(
        "practiceSettings",
        "query($p: ID!) { practiceSettings(practiceId: $p) { key value } }",
        lambda i: {"p": i["practice"]},
        practice_admins_only(),
    ),
    Row(
        "auditEvents",
        "query($p: ID!) { auditEvents(practiceId: $p, first: 5) { totalCount edges { node { id } } } }",
        lambda i: {"p": i["practice"]},
        practice_admins_only(),
    ),
    Row(
        "meaningfulUse",
        "query($p: ID!) { meaningfulUse(practiceId: $p) { countsAsPatientMessaging clinicians { id fullName } } }",
        lambda i: {"p": i["practice"]},
        expect(),
    ),
    Row("portalMailboxes", "{ portalMailboxes { id name status } }", lambda i: {}, patients_only()),
    Row(
        "portalConversations",
        "{ portalConversations { id status mailbox { name } messages { totalCount } } }",
        lambda i: {},
        patients_only(),
    ),
    Row("portalNotifications", "{ portalNotifications { email emailOnFile } }", lambda i: {}, patients_only()),
    # ---- mutations
    Row(
        "setPortalNotifications",
        "mutation { setPortalNotifications(email: false) { email } }",
        lambda i: {},
        patients_only(),
    ),
    Row(
        "createMailbox",
        f'mutation($p: ID!) {{ createMailbox(practiceId: $p, name: "Front Desk") {{ {MAILBOX} }} }}',
        lambda i: {"p": i["practice"]},
        mailbox_admins_only(),
    ),
    Row(
        "renameMailbox",
        f'mutation($m: ID!) {{ renameMailbox(mailboxId: $m, name: "Accounts") {{ {MAILBOX} }} }}',
        lambda i: {"m": i["billing"]},
        mailbox_admins_only(),
    ),
    Row(
        "deactivateMailbox",
        f"mutation($m: ID!) {{ deactivateMailbox(mailboxId: $m) {{ {MAILBOX} }} }}",
        lambda i: {"m": i["billing"]},
        mailbox_admins_only(),
    ),
    Row(
        "activateMailbox",
        f"mutation($m: ID!) {{ activateMailbox(mailboxId: $m) {{ {MAILBOX} }} }}",
        lambda i: {"m": i["billing"]},
        mailbox_admins_only(),
    ),
    Row(
        "deleteMailbox",
        "mutation($m: ID!) { deleteMailbox(mailboxId: $m) }",
        lambda i: {"m": i["scheduling"]},
        mailbox_admins_only(),
        "empty",
    ),
    Row(
        "deleteMailbox",
        "mutation($m: ID!) { deleteMailbox(mailboxId: $m) }",
        lambda i: {"m": i["billing"]},
        expect(members=FORBIDDEN, mailbox_admin="MAILBOX_NOT_EMPTY"),
        "with-conversations",
    ),
    Row(
        "setMailboxAutoReply",
        f'mutation($m: ID!) {{ setMailboxAutoReply(mailboxId: $m, text: "We answer within a day.") {{ {MAILBOX} }} }}',
        lambda i: {"m": i["billing"]},
        mailbox_admins_only(),
    ),
    Row(
        "retractMessage",
        f'mutation($id: ID!) {{ retractMessage(messageId: $id, reason: "wrong patient") {{ {MESSAGE} }} }}',
        lambda i: {"id": i["message"]},
        expect(members=FORBIDDEN, subscriber=OK, mailbox_admin=OK),
    ),
    Row(
        "subscribeToMailbox",
        f"mutation($m: ID!) {{ subscribeToMailbox(mailboxId: $m) {{ {MAILBOX} }} }}",
        lambda i: {"m": i["scheduling"]},
        expect(),
    ),
    Row(
        "unsubscribeFromMailbox",
        f"mutation($m: ID!) {{ unsubscribeFromMailbox(mailboxId: $m) {{ {MAILBOX} }} }}",
        lambda i: {"m": i["billing"]},
        expect(),
    ),
    Row(
        "setMailboxSubscribers",
        "mutation($m: ID!, $u: [ID!]!) { setMailboxSubscribers(mailboxId: $m, userIds: $u) { id subscriberCount } }",
        lambda i: {"m": i["billing"], "u": [i["staff"]]},
        mailbox_admins_only(),
    ),
    Row(
        "setUserMailboxAccess",
        "mutation($u: ID!, $p: ID!) { setUserMailboxAccess(userId: $u, practiceId: $p, allMailboxes: true) "
        "{ allMailboxes } }",
        lambda i: {"u": i["staff"], "p": i["practice"]},
        mailbox_admins_only(),
    ),
    Row(
        "grantPermission",
        "mutation($p: ID!, $u: ID!) { grantPermission(practiceId: $p, userId: $u, "
        "permission: MAILBOX_ADMIN_PERMISSION) "
        "{ permissions } }",
        lambda i: {"p": i["practice"], "u": i["staff"]},
        practice_admins_only(),
    ),
    Row(
        "revokePermission",
        "mutation($p: ID!, $u: ID!) { revokePermission(practiceId: $p, userId: $u, "
        "permission: MAILBOX_ADMIN_PERMISSION) "
        "{ permissions } }",
        lambda i: {"p": i["practice"], "u": i["mailbox_admin"]},
        practice_admins_only(),
    ),
    Row(
        "setPracticeSetting",
        'mutation($p: ID!) { setPracticeSetting(practiceId: $p, key: "ui.theme", value: "dark") { key value } }',
        lambda i: {"p": i["practice"]},
        practice_admins_only(),
    ),
    Row(
        "startConversation",
        f"mutation($m: ID!, $x: ID!) {{ startConversation(mailboxId: $m, patientId: $x) {{ {CONVERSATION} }} }}",
        lambda i: {"m": i["billing"], "x": i["other_patient"]},
        subscribers_only(),
        "mailbox-view",
    ),
    Row(
        "startConversation",
        f"mutation($m: ID!, $x: ID!) {{ startConversation(mailboxId: $m, patientId: $x, via: CHART_SUMMARY) "
        f"{{ {CONVERSATION} }} }}",
        lambda i: {"m": i["scheduling"], "x": i["patient"]},
        expect(),
        "chart-summary",
    ),
    Row(
        "archiveConversation",
        "mutation($c: ID!) { archiveConversation(conversationId: $c) { id status } }",
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
    ),
    Row(
        "unarchiveConversation",
        "mutation($c: ID!) { unarchiveConversation(conversationId: $c) { id status } }",
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
    ),
    Row(
        "markConversationRead",
        "mutation($c: ID!) { markConversationRead(conversationId: $c) { id unreadCount } }",
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
        "mailbox-view",
    ),
    Row(
        "markConversationRead",
        "mutation($c: ID!) { markConversationRead(conversationId: $c, via: CHART_SUMMARY) { id unreadCount } }",
        lambda i: {"c": i["conversation"]},
        expect(),
        "chart-summary",
    ),
    Row(
        "sendMessage",
        f'mutation($c: ID!) {{ sendMessage(conversationId: $c, body: "Hello", clientMessageId: "m-1") '
        f"{{ {MESSAGE} }} }}",
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
        "mailbox-view",
    ),
    Row(
        "sendMessage",
        f'mutation($c: ID!) {{ sendMessage(conversationId: $c, body: "Hello", via: CHART_SUMMARY) {{ {MESSAGE} }} }}',
        lambda i: {"c": i["conversation"]},
        expect(),
        "chart-summary",
    ),
    Row(
        "sendPortalMessage",
        f'mutation($m: ID!) {{ sendPortalMessage(mailboxId: $m, body: "Question", clientMessageId: "p-1") '
        f"{{ {MESSAGE} }} }}",
        lambda i: {"m": i["billing"]},
        patients_only(outside_patient=NOT_FOUND),
    ),
    # ---- working the pool
    Row(
        "quickReplies",
        "query($p: ID!) { quickReplies(practiceId: $p) { id title body } }",
        lambda i: {"p": i["practice"]},
        expect(),
    ),
    Row(
        "createQuickReply",
        'mutation($p: ID!) { createQuickReply(practiceId: $p, title: "Refill", body: "Your refill is ready.") { id } }',
        lambda i: {"p": i["practice"]},
        mailbox_admins_only(),
    ),
    Row(
        "updateQuickReply",
        'mutation($q: ID!) { updateQuickReply(quickReplyId: $q, title: "Hello", body: "Hello!") { id title } }',
        lambda i: {"q": i["quick_reply"]},
        mailbox_admins_only(),
    ),
    Row(
        "deleteQuickReply",
        "mutation($q: ID!) { deleteQuickReply(quickReplyId: $q) }",
        lambda i: {"q": i["quick_reply"]},
        mailbox_admins_only(),
    ),
    Row(
        "addInternalNote",
        f'mutation($c: ID!) {{ addInternalNote(conversationId: $c, body: "Called her back") {{ {MESSAGE} }} }}',
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
        "mailbox-view",
    ),
    Row(
        "addInternalNote",
        f'mutation($c: ID!) {{ addInternalNote(conversationId: $c, body: "Chart note", via: CHART_SUMMARY) '
        f"{{ {MESSAGE} }} }}",
        lambda i: {"c": i["conversation"]},
        expect(),
        "chart-summary",
    ),
    Row(
        "assignConversation",
        'mutation($c: ID!, $u: ID) { assignConversation(conversationId: $c, userId: $u, reason: "Billing question") '
        "{ id assignee { id } assignmentHistory { reason } } }",
        lambda i: {"c": i["conversation"], "u": i["subscriber"]},
        subscribers_only(),
        "assign",
    ),
    Row(
        "assignConversation",
        "mutation($c: ID!) { assignConversation(conversationId: $c, userId: null) { id assignee { id } } }",
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
        "unassign",
    ),
    Row(
        "setConversationPriority",
        "mutation($c: ID!) { setConversationPriority(conversationId: $c, priority: URGENT) { id priority } }",
        lambda i: {"c": i["conversation"]},
        subscribers_only(),
    ),
]


def api_for(world, role: str) -> Api:
    if role == "anonymous":
        return Api()
    if role in PATIENT_ROLES:
        return Api.as_patient(getattr(world, role))
    if role == "outsider":
        return Api.as_user(world.outsider)
    if role == "staff":
        return Api.as_user(world.staff)
    return Api.as_user(getattr(world, role))


CELLS = [pytest.param(row, role, id=f"{row.name}-{role}") for row in ROWS for role in ROLES]


@pytest.mark.parametrize(("row", "role"), CELLS)
def test_every_root_field_answers_each_role_as_the_table_says(world, row: Row, role: str):
    # given the world and a caller in this role
    api = api_for(world, role)
    # when the operation is called with this practice's ids
    answer = api.post(row.document, row.variables(ids(world)))
    # then it is answered, or refused with exactly the code of the table
    wanted = row.cells[role]
    errors = answer.get("errors") or []
    if wanted == OK:
        assert not errors, f"{row.name} as {role}: {errors}"
        assert answer["data"][row.field] is not None
    else:
        assert errors, f"{row.name} as {role} should be {wanted}, got {answer}"
        assert errors[0]["extensions"]["code"] == wanted, f"{row.name} as {role}: {errors}"
        assert errors[0]["path"][0] == row.field


def test_the_table_has_a_cell_for_every_role_of_every_row():
    for row in ROWS:
        assert set(row.cells) == set(ROLES), row.name


def test_the_table_covers_every_root_field():
    # given the live schema
    graphql_schema = schema._schema
    live = {
        "Query": set(graphql_schema.query_type.fields),
        "Mutation": set(graphql_schema.mutation_type.fields) if graphql_schema.mutation_type else set(),
    }
    # then every query and mutation has a row
    covered = {row.field for row in ROWS}
    missing = (live["Query"] | live["Mutation"]) - covered
    assert not missing, f"root fields without a row in the authorization table: {sorted(missing)}"
    assert not covered - (live["Query"] | live["Mutation"]), "rows for fields that no longer exist"


def test_every_subscription_field_is_checked_over_websockets_by_the_live_tests():
    # Subscribe-time refusals (NOT_FOUND for another practice, FORBIDDEN for the wrong kind of token, …) are
    # tested over real WebSockets in tests/live/*.py; a new subscription field must appear there.
    subscription_type = schema._schema.subscription_type
    fields = set(subscription_type.fields) if subscription_type else set()
    live_tests = "".join(p.read_text() for p in (Path(__file__).parents[1] / "live").glob("test_*.py"))
    missing = {name for name in fields if name not in live_tests}
    assert not missing, f"subscription fields not exercised in tests/live/*.py: {sorted(missing)}"


# ---- cross-practice leaks --------------------------------------------------------------------------


def _north_markers(world) -> list[str]:
    i = ids(world)
    users = User.objects.filter(memberships__practice=world.practice).exclude(
        memberships__practice=world.other_practice
    )
    markers = [*i.values(), "North Clinic", "María", "García", "John", "Smith", "A-1002", "Scheduling"]
    markers += ["Greeting", "Hello from the North desk"]
    markers += [gid("User", u.pk) for u in users] + [u.username for u in users] + [u.full_name for u in users]
    return markers


def _other_practice_roles(world) -> dict[str, Api]:
    south_staff = User.objects.create_user(username="sue_south", password="x-x-x-x-x-x", full_name="Sue South")
    Membership.objects.create(user=south_staff, practice=world.other_practice, role=Role.STAFF)
    south_admin = User.objects.create_user(username="sid_southadmin", password="x-x-x-x-x-x", full_name="Sid S")
    Membership.objects.create(user=south_admin, practice=world.other_practice, role=Role.ADMINISTRATOR)
    return {
        "owner and mailbox admin": Api.as_user(world.outsider),
        "administrator": Api.as_user(south_admin),
        "staff": Api.as_user(south_staff),
        "patient": Api.as_patient(world.outside_patient),
    }


def test_no_role_of_another_practice_reads_or_changes_anything_of_this_practice(world):
    # given the other practice's roles, and that practice's own mailbox named unlike anything here
    Mailbox.objects.filter(pk=world.outside_mailbox.pk).update(name="South Desk")
    markers = _north_markers(world)
    before = (
        list(Mailbox.objects.filter(practice=world.practice).values_list("name", "is_active").order_by("pk")),
        Conversation.objects.filter(practice=world.practice).count(),
        Message.objects.filter(conversation__practice=world.practice).count(),
        list(QuickReply.objects.filter(practice=world.practice).values_list("title", "body")),
        list(Conversation.objects.filter(practice=world.practice).values_list("assignee", "priority")),
    )
    for role, api in _other_practice_roles(world).items():
        for row in ROWS:
            # when they run every query and mutation with this practice's ids
            answer = api.post(row.document, row.variables(ids(world)))
            text = json.dumps(answer, ensure_ascii=False)
            # then no answer names or identifies anything of this practice
            leaked = [m for m in markers if m in text]
            assert not leaked, f"{row.name} as South {role} leaked {leaked}: {text[:400]}"
            for error in answer.get("errors") or []:
                assert error["extensions"]["code"] in (NOT_FOUND, FORBIDDEN, "FEATURE_DISABLED"), (
                    row.name,
                    role,
                    error,
                )
    # and nothing here changed
    after = (
        list(Mailbox.objects.filter(practice=world.practice).values_list("name", "is_active").order_by("pk")),
        Conversation.objects.filter(practice=world.practice).count(),
        Message.objects.filter(conversation__practice=world.practice).count(),
        list(QuickReply.objects.filter(practice=world.practice).values_list("title", "body")),
        list(Conversation.objects.filter(practice=world.practice).values_list("assignee", "priority")),
    )
    assert after == before
