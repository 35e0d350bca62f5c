"""Mailboxes over HTTP: lifecycle, subscriptions, admin pages, feature switches, Meaningful Use, `me`."""

from __future__ import annotations

from core.models import PORTAL_SETTING, WORKBENCH_SETTING, Membership, Role, User
from tests.graphql_client import Api, gid

MAILBOX = "id name status isSubscribed subscriberCount unreadCount"
LIST = (
    "query($p: ID!, $s: MailboxStatus, $only: Boolean) "
    f"{{ mailboxes(practiceId: $p, status: $s, subscribedOnly: $only) {{ {MAILBOX} }} }}"
)


def names(api: Api, world, **variables) -> list[str]:
    data = api.data(LIST, {"p": gid("Practice", world.practice.pk), **variables})
    return [m["name"] for m in data["mailboxes"]]


def mutate(api: Api, field: str, mailbox_id: str, extra: str = "") -> dict:
    return api.data(f"mutation($m: ID!) {{ {field}(mailboxId: $m{extra}) {{ {MAILBOX} }} }}", {"m": mailbox_id})[field]


def test_mailbox_admin_creates_renames_deactivates_activates_and_deletes_a_mailbox(world):
    # given a mailbox admin
    admin = Api.as_user(world.mailbox_admin)
    # when they create "Front Desk"
    created = admin.data(
        f'mutation($p: ID!) {{ createMailbox(practiceId: $p, name: "  Front   Desk ") {{ {MAILBOX} }} }}',
        {"p": gid("Practice", world.practice.pk)},
    )["createMailbox"]
    # then it is active, trimmed, with nobody subscribed
    assert created == {
        "id": created["id"],
        "name": "Front Desk",
        "status": "ACTIVE",
        "isSubscribed": False,
        "subscriberCount": 0,
        "unreadCount": 0,
    }
    assert names(admin, world) == ["Billing", "Front Desk", "Scheduling"]
    # and another mailbox with the same name in another case is refused
    code = admin.error_code(
        'mutation($p: ID!) { createMailbox(practiceId: $p, name: "front desk") { id } }',
        {"p": gid("Practice", world.practice.pk)},
    )
    assert code == "DUPLICATE_NAME"
    # when renamed, deactivated, activated
    assert mutate(admin, "renameMailbox", created["id"], ', name: "Reception"')["name"] == "Reception"
    assert mutate(admin, "deactivateMailbox", created["id"])["status"] == "DEACTIVATED"
    assert names(admin, world) == ["Billing", "Scheduling"]
    assert names(admin, world, s="DEACTIVATED") == ["Reception"]
    assert names(admin, world, s=None) == ["Billing", "Reception", "Scheduling"]
    assert mutate(admin, "activateMailbox", created["id"])["status"] == "ACTIVE"
    # and deleted while empty
    deleted = admin.data("mutation($m: ID!) { deleteMailbox(mailboxId: $m) }", {"m": created["id"]})
    assert deleted == {"deleteMailbox": created["id"]}
    assert admin.error_code("query($m: ID!) { mailbox(id: $m) { id } }", {"m": created["id"]}) == "NOT_FOUND"


def test_a_mailbox_with_only_an_archived_conversation_cannot_be_deleted(world):
    # given Billing's only conversation archived
    Api.as_user(world.subscriber).data(
        "mutation($c: ID!) { archiveConversation(conversationId: $c) { status } }",
        {"c": gid("Conversation", world.conversation.pk)},
    )
    # when the mailbox admin deletes Billing
    answer = Api.as_user(world.mailbox_admin).post(
        "mutation($m: ID!) { deleteMailbox(mailboxId: $m) }", {"m": gid("Mailbox", world.billing.pk)}
    )
    # then it is refused and says what to do instead
    assert answer["errors"][0]["extensions"]["code"] == "MAILBOX_NOT_EMPTY"
    assert "deactivate" in answer["errors"][0]["message"]


def test_any_member_subscribes_and_unsubscribes_and_filters_to_subscribed_mailboxes(world):
    # given a staff member subscribed to nothing
    api = Api.as_user(world.staff)
    assert names(api, world, only=True) == []
    # when they subscribe to Scheduling
    subscribed = mutate(api, "subscribeToMailbox", gid("Mailbox", world.scheduling.pk))
    # then they see it as subscribed, counted, and in the subscribed-only list
    assert (subscribed["isSubscribed"], subscribed["subscriberCount"]) == (True, 1)
    assert names(api, world, only=True) == ["Scheduling"]
    # and unsubscribing takes it away again
    assert mutate(api, "unsubscribeFromMailbox", gid("Mailbox", world.scheduling.pk))["isSubscribed"] is False
    assert names(api, world, only=True) == []


def test_subscribing_to_a_deactivated_mailbox_is_refused(world):
    Api.as_user(world.mailbox_admin).data(
        "mutation($m: ID!) { deactivateMailbox(mailboxId: $m) { id } }", {"m": gid("Mailbox", world.scheduling.pk)}
    )
    code = Api.as_user(world.staff).error_code(
        "mutation($m: ID!) { subscribeToMailbox(mailboxId: $m) { id } }", {"m": gid("Mailbox", world.scheduling.pk)}
    )
    assert code == "MAILBOX_DEACTIVATED"


def test_deactivated_mailbox_leaves_the_mailbox_view_but_stays_readable_from_the_chart(world):
    # given a thread in Billing, then Billing deactivated
    patient = Api.as_patient(world.patient)
    patient.data(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "Hello") { id } }',
        {"m": gid("Mailbox", world.billing.pk)},
    )
    admin = Api.as_user(world.mailbox_admin)
    mutate(admin, "deactivateMailbox", gid("Mailbox", world.billing.pk))
    subscriber = Api.as_user(world.subscriber)
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    # then its subscribers cannot work it from the mailbox view
    answer = subscriber.post(
        "query($m: ID!) { mailbox(id: $m) { status conversations { totalCount } } }",
        {"m": gid("Mailbox", world.billing.pk)},
    )
    assert answer["data"]["mailbox"]["status"] == "DEACTIVATED"
    assert answer["errors"][0]["extensions"]["code"] == "MAILBOX_DEACTIVATED"
    assert (
        subscriber.error_code("query($c: ID!) { conversation(id: $c) { id } }", conversation) == "MAILBOX_DEACTIVATED"
    )
    # and nobody can write in it
    send = 'mutation($c: ID!) { sendMessage(conversationId: $c, body: "x", via: CHART_SUMMARY) { id } }'
    assert subscriber.error_code(send, conversation) == "MAILBOX_DEACTIVATED"
    portal_send = 'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "x") { id } }'
    assert patient.error_code(portal_send, {"m": gid("Mailbox", world.billing.pk)}) == "MAILBOX_DEACTIVATED"
    assert [m["name"] for m in patient.data("{ portalMailboxes { name } }")["portalMailboxes"]] == ["Scheduling"]
    # but the history stays readable from the patient's chart, by any staff member
    chart = Api.as_user(world.staff).data(
        "query($c: ID!) { conversation(id: $c, via: CHART_SUMMARY) { messages { edges { node { body } } } } }",
        conversation,
    )
    assert [e["node"]["body"] for e in chart["conversation"]["messages"]["edges"]] == ["Hello"]
    # and activating restores everything as it was
    mutate(admin, "activateMailbox", gid("Mailbox", world.billing.pk))
    opened = subscriber.data("query($c: ID!) { conversation(id: $c) { unreadCount } }", conversation)
    assert opened["conversation"]["unreadCount"] == 1
    assert patient.data(portal_send, {"m": gid("Mailbox", world.billing.pk)})["sendPortalMessage"]["id"]


def test_mailbox_admin_sets_subscribers_and_a_users_mailbox_access(world):
    admin = Api.as_user(world.mailbox_admin)
    billing = gid("Mailbox", world.billing.pk)
    # when the admin sets Billing's subscribers
    data = admin.data(
        "mutation($m: ID!, $u: [ID!]!) { setMailboxSubscribers(mailboxId: $m, userIds: $u) "
        "{ subscriberCount subscribers { username } } }",
        {"m": billing, "u": [gid("User", world.staff.pk), gid("User", world.clinician.pk)]},
    )["setMailboxSubscribers"]
    # then exactly those are subscribed
    assert data["subscriberCount"] == 2
    assert sorted(u["username"] for u in data["subscribers"]) == ["dr_patel", "stan_staff"]
    # when the admin gives the staff member every mailbox, then a chosen one
    access = (
        "mutation($u: ID!, $p: ID!, $all: Boolean, $ids: [ID!]) { setUserMailboxAccess(userId: $u, practiceId: $p, "
        "allMailboxes: $all, mailboxIds: $ids) "
        "{ practice { name } allMailboxes mailboxes { mailbox { name } subscribed } } }"
    )
    ids = {"u": gid("User", world.staff.pk), "p": gid("Practice", world.practice.pk)}
    everything = admin.data(access, {**ids, "all": True})["setUserMailboxAccess"]
    assert everything[0]["allMailboxes"] is True
    chosen = admin.data(access, {**ids, "ids": [gid("Mailbox", world.scheduling.pk)]})["setUserMailboxAccess"]
    # then the access page shows the chosen set
    assert chosen == [
        {
            "practice": {"name": "North Clinic"},
            "allMailboxes": False,
            "mailboxes": [
                {"mailbox": {"name": "Billing"}, "subscribed": False},
                {"mailbox": {"name": "Scheduling"}, "subscribed": True},
            ],
        }
    ]
    page = admin.data(
        "query($u: ID!) { userMailboxAccess(userId: $u) { allMailboxes mailboxes { subscribed } } }",
        {"u": ids["u"]},
    )
    assert page["userMailboxAccess"][0]["mailboxes"] == [{"subscribed": False}, {"subscribed": True}]


def test_workbench_switch_off_refuses_staff_mailbox_operations_but_not_settings(world):
    # given the owner turns the workbench off
    owner = Api.as_user(world.owner)
    setting = (
        "mutation($p: ID!, $k: String!, $v: String!) "
        "{ setPracticeSetting(practiceId: $p, key: $k, value: $v) { value } }"
    )
    practice = gid("Practice", world.practice.pk)
    owner.data(setting, {"p": practice, "k": WORKBENCH_SETTING, "v": "F"})
    subscriber = Api.as_user(world.subscriber)
    # then every staff mailbox operation is FEATURE_DISABLED, listing included
    assert subscriber.error_code(LIST, {"p": practice}) == "FEATURE_DISABLED"
    assert (
        subscriber.error_code(
            "query($c: ID!) { conversation(id: $c) { id } }", {"c": gid("Conversation", world.conversation.pk)}
        )
        == "FEATURE_DISABLED"
    )
    assert (
        subscriber.error_code(
            "mutation($m: ID!) { subscribeToMailbox(mailboxId: $m) { id } }", {"m": gid("Mailbox", world.scheduling.pk)}
        )
        == "FEATURE_DISABLED"
    )
    # while settings and permissions stay manageable, and the portal is governed by its own switch
    owner.data(
        "mutation($p: ID!, $u: ID!) { grantPermission(practiceId: $p, userId: $u, "
        "permission: MAILBOX_ADMIN_PERMISSION) { permissions } }",
        {"p": practice, "u": gid("User", world.staff.pk)},
    )
    assert Api.as_patient(world.patient).data("{ portalMailboxes { name } }")["portalMailboxes"]
    owner.data(setting, {"p": practice, "k": WORKBENCH_SETTING, "v": "T"})
    assert names(subscriber, world) == ["Billing", "Scheduling"]


def test_portal_switch_off_refuses_portal_messaging_only(world):
    owner = Api.as_user(world.owner)
    owner.data(
        'mutation($p: ID!, $k: String!) { setPracticeSetting(practiceId: $p, key: $k, value: "F") { value } }',
        {"p": gid("Practice", world.practice.pk), "k": PORTAL_SETTING},
    )
    patient = Api.as_patient(world.patient)
    assert patient.error_code("{ portalMailboxes { id } }") == "FEATURE_DISABLED"
    assert patient.error_code("{ portalConversations { id } }") == "FEATURE_DISABLED"
    assert (
        patient.error_code(
            'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "x") { id } }',
            {"m": gid("Mailbox", world.billing.pk)},
        )
        == "FEATURE_DISABLED"
    )
    assert names(Api.as_user(world.subscriber), world) == ["Billing", "Scheduling"]


def test_meaningful_use_counts_a_clinician_subscribed_to_an_active_mailbox(world):
    query = "query($p: ID!) { meaningfulUse(practiceId: $p) { countsAsPatientMessaging clinicians { id fullName } } }"
    practice = {"p": gid("Practice", world.practice.pk)}
    staff = Api.as_user(world.staff)
    # given no clinician subscribed: not counted
    assert staff.data(query, practice)["meaningfulUse"] == {"countsAsPatientMessaging": False, "clinicians": []}
    # when the clinician subscribes to Billing
    mutate(Api.as_user(world.clinician), "subscribeToMailbox", gid("Mailbox", world.billing.pk))
    # then the practice counts, listing them
    assert staff.data(query, practice)["meaningfulUse"] == {
        "countsAsPatientMessaging": True,
        "clinicians": [{"id": gid("User", world.clinician.pk), "fullName": "Dr Patel"}],
    }
    # and a deactivated mailbox does not count
    mutate(Api.as_user(world.mailbox_admin), "deactivateMailbox", gid("Mailbox", world.billing.pk))
    assert staff.data(query, practice)["meaningfulUse"]["countsAsPatientMessaging"] is False


def test_me_and_practices_show_the_viewer_and_memberships_show_only_shared_practices(world):
    # given a user in both practices
    both = User.objects.create_user(username="bea_both", password="x-x-x-x-x-x", full_name="Bea Both")
    Membership.objects.create(user=both, practice=world.practice, role=Role.STAFF, is_clinician=True)
    Membership.objects.create(user=both, practice=world.other_practice, role=Role.ADMINISTRATOR)
    # when they ask who they are
    me = Api.as_user(both).data(
        "{ me { username fullName memberships { practice { name } role isClinician permissions } } practices { name } }"
    )
    # then they see both memberships and both practices
    assert me["me"]["memberships"] == [
        {"practice": {"name": "North Clinic"}, "role": "STAFF", "isClinician": True, "permissions": []},
        {"practice": {"name": "South Clinic"}, "role": "ADMINISTRATOR", "isClinician": False, "permissions": []},
    ]
    assert [p["name"] for p in me["practices"]] == ["North Clinic", "South Clinic"]
    # but a colleague of North sees only their North membership
    users = Api.as_user(world.staff).data(
        "query($p: ID!) { practiceUsers(practiceId: $p) { user { username memberships { practice { name } } } } }",
        {"p": gid("Practice", world.practice.pk)},
    )["practiceUsers"]
    bea = next(m["user"] for m in users if m["user"]["username"] == "bea_both")
    assert bea["memberships"] == [{"practice": {"name": "North Clinic"}}]
