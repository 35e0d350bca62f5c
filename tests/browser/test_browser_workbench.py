"""The Workbench, chart summary and patient portal, driven in Debian's Chromium against a live daphne server.

One daphne process (HTTP + WebSocket) is forked for the session after the test database exists; each test
writes its own rows (transactional database) and opens one browser context per person.
"""

from __future__ import annotations

import os
import re
import time
from functools import partial
from pathlib import Path

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from core.models import Conversation, MailboxSubscription, Membership, Message, PermissionGrant, PracticeSetting
from core.tokens import issue_token
from tests import processes
from tests.attachment_samples import pdf_bytes
from tests.graphql_client import gid

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    # A developer machine without Chromium may skip; CI sets REQUIRE_BROWSER=1, so there a missing browser fails.
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists() and not os.environ.get("REQUIRE_BROWSER"),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct-horse-battery"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "screenshots"
LIVE_TIMEOUT = 12_000  # ms: subscriptions deliver at once; the polling fallback within a few seconds


@pytest.fixture(scope="session")
def server_url(django_db_setup, django_db_blocker):
    from channels.testing.live import make_application
    from daphne.testing import DaphneProcess
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    def setup() -> None:
        processes.die_with_parent()  # a killed test process does not leave its server holding the database
        django_db_blocker.unblock()  # the fork inherits pytest-django's "no database" guard

    with django_db_blocker.unblock():
        connections.close_all()  # the forked server opens its own connections to the test database
    server = DaphneProcess("127.0.0.1", partial(make_application, static_wrapper=ASGIStaticFilesHandler), setup=setup)
    server.daemon = True
    server.start()
    try:
        if not server.ready.wait(timeout=20):
            raise RuntimeError("daphne did not start")
        yield f"http://127.0.0.1:{server.port.value}"
    finally:
        server.terminate()
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
            server.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API runs an event loop in this thread until stopped, which would break
    # the async tests that run after this module in the same worker.
    # While it runs, Django's async-safety guard would refuse the test's own sync ORM calls (and the flush
    # between tests), so it is lifted for exactly the module's lifetime.
    assert Path(CHROMIUM).exists(), "Install Debian's Chromium: apt-get install -y chromium"
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_page(server_url, browser, transactional_db):
    # Depends on transactional_db so its teardown (closing every page and socket) runs before the flush.
    contexts = []

    def open_page(width: int = 1366, height: int = 800) -> Page:
        context = browser.new_context(base_url=server_url, viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield open_page
    for context in contexts:
        context.close()
    time.sleep(0.3)  # let the server finish what the closed pages started before the tables are emptied


def with_password(*users) -> None:
    """The forked server keeps the production hashers; the test process only has MD5."""
    hasher = Argon2PasswordHasher()
    for user in users:
        user.password = hasher.encode(PASSWORD, hasher.salt())
        user.save(update_fields=["password"])


def sign_in(page: Page, username: str) -> Page:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#mailbox-list")).to_be_visible()
    expect(page.locator("#mailbox-list .muted", has_text="Loading")).to_have_count(0)
    return page


def portal_sign_in(page: Page, patient) -> Page:
    page.goto("/portal/")
    page.get_by_label("Access token").fill(issue_token(patient=patient))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#portal-conversations")).to_be_visible()
    return page


def mailbox(page: Page, name: str):
    return page.locator(".mailbox", has=page.locator(".mailbox-name", has_text=re.compile(f"^{re.escape(name)}$")))


def mailbox_menu(page: Page, name: str, item: str) -> None:
    page.get_by_role("button", name=f"Options for {name}").click()
    page.get_by_role("menuitem", name=item).click()


def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def test_signed_out_visitor_is_sent_to_the_login_page(open_page):
    # given a visitor without a session / when they open the Workbench
    page = open_page()
    page.goto("/")
    # then they land on the login page
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Patient Messages Mailbox")).to_be_visible()
    shot(page, "01-login")


def test_admin_creates_a_mailbox_and_subscribes_a_colleague(open_page, world):
    # given a mailbox admin and a colleague subscribed to nothing
    with_password(world.mailbox_admin, world.staff)
    admin = sign_in(open_page(), world.mailbox_admin.username)

    # when the admin creates "Front Desk" and ticks the colleague in Manage Subscribers
    admin.get_by_role("button", name="+ New Mailbox").click()
    admin.get_by_label("Mailbox name").fill("Front Desk")
    admin.get_by_role("button", name="Create mailbox").click()
    expect(mailbox(admin, "Front Desk")).to_be_visible()
    mailbox_menu(admin, "Front Desk", "Manage Subscribers")
    admin.get_by_text("Stan Staff (stan_staff)").click()
    admin.get_by_role("button", name="Save").click()

    # then the colleague is subscribed, and sees it that way after signing in
    expect(mailbox(admin, "Front Desk")).to_contain_text("Not subscribed · 1 subscriber")
    assert MailboxSubscription.objects.filter(mailbox__name="Front Desk", user=world.staff).exists()
    colleague = sign_in(open_page(), world.staff.username)
    expect(mailbox(colleague, "Front Desk")).to_contain_text("Subscribed")
    # and a staff member without admin rights gets no admin options
    expect(colleague.get_by_role("button", name="+ New Mailbox")).to_have_count(0)
    colleague.get_by_role("button", name="Options for Front Desk").click()
    expect(colleague.get_by_role("menuitem")).to_have_text(["Unsubscribe"])
    colleague.keyboard.press("Escape")

    # and an unsubscribed mailbox prompts to subscribe (NOT_SUBSCRIBED from the API)
    colleague.locator(".mailbox-select", has_text="Scheduling").click()
    expect(colleague.get_by_text("You are not subscribed to Scheduling.")).to_be_visible()
    colleague.get_by_role("button", name="Subscribe to Scheduling").click()
    expect(colleague.get_by_text("No active conversations")).to_be_visible()
    admin.get_by_role("button", name="Options for Front Desk").click()
    expect(admin.get_by_role("menuitem")).to_have_text(
        ["Subscribe", "Manage Subscribers", "Rename", "Auto-reply…", "Deactivate", "Delete"]
    )
    shot(admin, "02-mailbox-menu")


def test_staff_starts_a_conversation_with_an_attachment_and_the_patient_answers_live(open_page, world):
    # given a subscriber of Billing, a colleague watching the mailbox list, and the patient's portal open
    with_password(world.subscriber, world.mailbox_admin)
    staff = sign_in(open_page(), world.subscriber.username)
    colleague = sign_in(open_page(), world.mailbox_admin.username)
    portal = portal_sign_in(open_page(1000, 760), world.other_patient)
    expect(portal.get_by_text("No messages yet.")).to_be_visible()

    # when the staff member searches the patient and starts a conversation
    staff.locator(".mailbox-select", has_text="Billing").click()
    staff.get_by_role("button", name="+ New Conversation").click()
    staff.get_by_label("Patient", exact=True).fill("smi jo")
    result = staff.locator(".patient-result", has_text="John Smith")
    expect(result).to_contain_text("(she/her)")
    expect(result).to_contain_text("DOB 12/01/1975 · Account A-1002")
    shot(staff, "03-patient-search")
    result.click()
    expect(staff.locator("#thread-title")).to_contain_text("John Smith")
    # and sends a text with a PDF attached
    staff.get_by_role("textbox", name="Message").fill("Hello John, your lab results are attached.")
    staff.locator("#composer-files").set_input_files(
        files=[{"name": "lab-results.pdf", "mimeType": "application/pdf", "buffer": pdf_bytes()}]
    )
    staff.get_by_role("button", name="Send").click()
    sent = staff.locator(".msg-out").last
    expect(sent).to_contain_text("your lab results are attached")
    expect(sent.get_by_role("link", name="lab-results.pdf")).to_be_visible()
    expect(staff.locator(".conversation.selected")).to_contain_text("John Smith")

    # then the patient's portal shows it live, with the attachment
    expect(portal.locator(".msg-in")).to_contain_text("your lab results are attached", timeout=LIVE_TIMEOUT)
    download_url = portal.get_by_role("link", name="lab-results.pdf").get_attribute("href")
    assert "/attachments/" in download_url
    # when the patient answers
    portal.get_by_role("textbox", name="Message").fill("Thank you! Should I book a follow-up?")
    portal.get_by_role("button", name="Send").click()
    expect(portal.locator(".msg-out")).to_contain_text("Should I book a follow-up?")
    shot(portal, "04-portal")

    # then the staff thread shows the answer live
    expect(staff.locator(".msg-in")).to_contain_text("Should I book a follow-up?", timeout=LIVE_TIMEOUT)
    # and the colleague (subscribed, thread not open) sees the unread badge on Billing and in the header
    expect(mailbox(colleague, "Billing").locator(".badge")).to_have_text("1", timeout=LIVE_TIMEOUT)
    expect(colleague.locator("#msg-icon-count")).to_have_text("1")
    colleague.locator(".mailbox-select", has_text="Billing").click()
    expect(colleague.locator(".conversation", has_text="John Smith").locator(".badge")).to_have_text("1")
    shot(colleague, "05-unread-badges")
    colleague.locator(".conversation-select", has_text="John Smith").click()
    expect(colleague.locator(".msg-in")).to_contain_text("Should I book a follow-up?")
    expect(colleague.locator("#msg-icon-count")).to_be_hidden()
    shot(staff, "06-workbench-thread")


def test_archived_conversation_is_reactivated_by_a_patient_message_and_from_the_archive(open_page, world):
    # given a subscriber with María's Billing conversation open, and María's portal
    with_password(world.subscriber)
    staff = sign_in(open_page(), world.subscriber.username)
    portal = portal_sign_in(open_page(), world.patient)
    staff.locator(".mailbox-select", has_text="Billing").click()
    staff.locator(".conversation-select", has_text="María García").click()

    # when the subscriber archives it
    staff.get_by_role("button", name="Archive").click()
    # then it is in the archived list
    expect(staff.get_by_role("tab", name="Archived")).to_have_attribute("aria-selected", "true")
    expect(staff.locator(".conversation", has_text="María García")).to_be_visible()
    expect(staff.locator(".status-pill")).to_have_text("Archived")
    shot(staff, "08-archived")

    # when the patient writes to Billing, the conversation is active again (live)
    portal.get_by_role("button", name="New message").click()
    portal.get_by_role("textbox", name="Message").fill("I have a question about my bill.")
    portal.get_by_role("button", name="Send").click()
    expect(staff.locator(".status-pill")).to_have_text("Active", timeout=LIVE_TIMEOUT)
    expect(staff.locator(".msg-in")).to_contain_text("question about my bill")
    world.conversation.refresh_from_db()
    assert world.conversation.status == "ACTIVE"

    # when it is archived again and reactivated from the archived list
    staff.get_by_role("button", name="Archive").click()
    expect(staff.locator(".status-pill")).to_have_text("Archived")
    staff.get_by_role("button", name="Reactivate").click()
    # then it is back among the active conversations
    expect(staff.get_by_role("tab", name="Active")).to_have_attribute("aria-selected", "true")
    expect(staff.locator(".conversation.selected")).to_contain_text("María García")
    expect(staff.locator(".status-pill")).to_have_text("Active")

    # and a staff message reactivates an archived conversation too
    staff.get_by_role("button", name="Archive").click()
    expect(staff.locator(".status-pill")).to_have_text("Archived")
    staff.get_by_role("textbox", name="Message").fill("We have corrected the invoice.")
    staff.get_by_role("button", name="Send").click()
    expect(staff.locator(".status-pill")).to_have_text("Active")
    assert Conversation.objects.get(pk=world.conversation.pk).status == "ACTIVE"


def test_deactivated_mailbox_is_grayed_out_and_refuses_sends(open_page, world):
    # given a subscriber with a Billing thread open, and the mailbox admin
    with_password(world.subscriber, world.mailbox_admin)
    staff = sign_in(open_page(), world.subscriber.username)
    admin = sign_in(open_page(), world.mailbox_admin.username)
    staff.locator(".mailbox-select", has_text="Billing").click()
    staff.locator(".conversation-select", has_text="María García").click()
    expect(staff.locator("#thread-title")).to_contain_text("María García")

    # when the admin deactivates Billing from the three-dot menu
    mailbox_menu(admin, "Billing", "Deactivate")
    expect(mailbox(admin, "Billing")).to_have_count(0)

    # then it leaves the subscriber's mailbox view live, thread included
    expect(mailbox(staff, "Billing")).to_have_count(0, timeout=LIVE_TIMEOUT)
    expect(staff.get_by_text("The mailbox you had open is no longer in this list")).to_be_visible()
    expect(staff.get_by_role("textbox", name="Message")).to_have_count(0)
    # and from the chart, where its history stays readable, a send is refused with the server's message
    staff.goto(f"/chart/{gid('Patient', world.patient.pk)}")
    expect(staff.locator(".composer-notice")).to_contain_text("This mailbox is deactivated")
    staff.get_by_role("textbox", name="Message").fill("Are you still there?")
    staff.get_by_role("button", name="Send").click()
    expect(staff.locator(".toast-error")).to_contain_text("MAILBOX_DEACTIVATED")
    assert not Message.objects.filter(body="Are you still there?").exists()

    # and Billing appears grayed out among the deactivated mailboxes, where admins may activate it
    admin.get_by_label("Mailbox view").select_option("DEACTIVATED")
    billing = mailbox(admin, "Billing")
    expect(billing).to_have_class(re.compile(r"\bdeactivated\b"))
    color = billing.locator(".mailbox-name").evaluate("el => getComputedStyle(el).color")
    assert color == "rgb(154, 164, 177)", color
    admin.get_by_role("button", name="Options for Billing").click()
    expect(admin.get_by_role("menuitem")).to_have_text(["Manage Subscribers", "Rename", "Activate", "Delete"])
    shot(admin, "09-deactivated")
    admin.get_by_role("menuitem", name="Activate").click()
    expect(admin.get_by_text("No deactivated mailboxes.")).to_be_visible()


def test_chart_summary_reads_and_answers_without_a_subscription(open_page, world):
    # given a staff member subscribed to nothing and María's Billing conversation with a message from her
    with_password(world.staff)
    portal = portal_sign_in(open_page(), world.patient)
    portal.get_by_role("button", name="New message").click()
    portal.get_by_role("textbox", name="Message").fill("Can I pay in two installments?")
    portal.get_by_role("button", name="Send").click()
    expect(portal.locator(".msg-out")).to_contain_text("two installments")
    staff = sign_in(open_page(), world.staff.username)

    # when they open María's chart summary
    staff.goto(f"/chart/{gid('Patient', world.patient.pk)}")
    # then the conversation is readable
    expect(staff.get_by_role("heading", name=re.compile("María García"))).to_be_visible()
    expect(staff.locator(".msg-in")).to_contain_text("two installments")
    # and answerable
    staff.get_by_role("textbox", name="Message").fill("Yes, two installments are fine.")
    staff.get_by_role("button", name="Send").click()
    expect(staff.locator(".msg-out")).to_contain_text("two installments are fine")
    shot(staff, "10-chart-summary")
    assert not MailboxSubscription.objects.filter(user=world.staff).exists()
    # and the patient sees the answer live
    expect(portal.locator(".msg-in")).to_contain_text("two installments are fine", timeout=LIVE_TIMEOUT)


def test_config_screens_grant_mailbox_admin_and_set_mailbox_access_and_settings(open_page, world):
    # given the practice owner, who is also a mailbox admin
    PermissionGrant.objects.create(
        membership=world.owner.memberships.get(practice=world.practice), permission="MAILBOX_ADMIN_PERMISSION"
    )
    with_password(world.owner)
    owner = sign_in(open_page(), world.owner.username)

    # when they grant MAILBOX_ADMIN_PERMISSION to Stan in Access Control
    owner.get_by_role("button", name="Config").click()
    owner.get_by_role("menuitem", name="Access Control").click()
    row = owner.locator(".acl-row", has_text="stan_staff")
    row.get_by_label("Permission to grant to Stan Staff").select_option("MAILBOX_ADMIN_PERMISSION")
    row.get_by_role("button", name="Save").click()
    chips = owner.locator(".acl-row", has_text="stan_staff").locator(".chip")
    expect(chips).to_contain_text("MAILBOX_ADMIN_PERMISSION")
    shot(owner, "11-access-control")

    # and subscribe Stan to all mailboxes of the practice in Logins → Mailbox Access
    owner.get_by_role("button", name="Config").click()
    owner.get_by_role("menuitem", name="Logins").click()
    owner.locator(".user-select", has_text="Stan Staff").click()
    owner.get_by_role("button", name="Configure").click()
    owner.get_by_text("All mailboxes").click()
    expect(owner.get_by_role("switch", name="Billing")).to_be_checked()
    expect(owner.get_by_role("switch", name="Scheduling")).to_be_checked()
    owner.get_by_role("switch", name="Scheduling").uncheck(force=True)
    expect(owner.get_by_role("switch", name="All mailboxes")).not_to_be_checked()
    shot(owner, "12-mailbox-access")
    assert set(MailboxSubscription.objects.filter(user=world.staff).values_list("mailbox__name", flat=True)) == {
        "Billing"
    }

    # and turn the portal switch off in Practice Settings
    owner.goto("/#/config/settings")
    owner.get_by_role("switch", name=re.compile("Patients message mailboxes")).uncheck(force=True)
    expect(owner.locator(".settings-table")).to_contain_text("F")
    owner.get_by_label("Key").fill("ui.theme")
    owner.get_by_label("Value").fill("calm")
    owner.get_by_role("button", name="Save").click()
    expect(owner.locator(".settings-table")).to_contain_text("ui.theme")
    shot(owner, "13-practice-settings")
    setting = PracticeSetting.objects.get(practice=world.practice, key="patient_portal.use_mailbox_messaging")
    assert setting.value == "F"


def test_workbench_is_usable_at_phone_width(open_page, world):
    # given a subscriber on a phone-sized screen
    with_password(world.subscriber)
    phone = sign_in(open_page(390, 800), world.subscriber.username)
    # when they pick Billing and then María's conversation
    expect(phone.locator(".pane-conversations")).to_be_hidden()
    phone.locator(".mailbox-select", has_text="Billing").click()
    expect(phone.locator(".pane-mailboxes")).to_be_hidden()
    phone.locator(".conversation-select", has_text="María García").click()
    # then the thread fills the screen with a way back
    expect(phone.locator(".pane-thread")).to_be_visible()
    expect(phone.get_by_role("button", name="Back to conversations")).to_be_visible()
    phone.get_by_role("textbox", name="Message").fill("Sent from a phone")
    phone.get_by_role("button", name="Send").click()
    expect(phone.locator(".msg-out")).to_contain_text("Sent from a phone")
    shot(phone, "14-phone")
    assert os.path.exists(SHOTS / "14-phone.png")


def test_live_updates_resume_after_a_dropped_connection_with_a_banner(open_page, world):
    # given a subscriber with María's thread open over a live WebSocket, and María's portal
    with_password(world.subscriber)
    staff = open_page()
    sent_frames: list[str] = []
    staff.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent_frames.append(str(payload))))
    sign_in(staff, world.subscriber.username)
    staff.locator(".mailbox-select", has_text="Billing").click()
    staff.locator(".conversation-select", has_text="María García").click()
    staff.wait_for_function("window.pmmLive && window.pmmLive.connected")
    portal = portal_sign_in(open_page(), world.patient)
    portal.get_by_role("button", name="New message").click()
    portal.get_by_role("textbox", name="Message").fill("First question")
    portal.get_by_role("button", name="Send").click()
    expect(staff.locator(".msg-in")).to_contain_text("First question", timeout=LIVE_TIMEOUT)

    # when the connection drops and the patient writes meanwhile
    staff.evaluate("window.pmmLive.reconnect()")
    expect(staff.locator("#banner")).to_contain_text("Connection lost — reconnecting")
    shot(staff, "15-reconnect-banner")
    portal.get_by_role("textbox", name="Message").fill("Second question, sent while you were offline")
    portal.get_by_role("button", name="Send").click()

    # then the page reconnects, says so, and shows the missed message
    expect(staff.locator("#banner")).to_contain_text("Reconnected", timeout=LIVE_TIMEOUT)
    expect(staff.locator(".msg-in").last).to_contain_text("sent while you were offline", timeout=LIVE_TIMEOUT)
    # and it resumed its subscription after the last cursor it had seen
    resumed = [f for f in sent_frames if '"subscribe"' in f and '"after"' in f]
    assert resumed, sent_frames


def test_practice_switcher_shows_the_mailboxes_of_the_chosen_practice(open_page, world):
    # given a subscriber who also works at South Clinic
    Membership.objects.create(user=world.subscriber, practice=world.other_practice, role="STAFF")
    with_password(world.subscriber)
    page = sign_in(open_page(), world.subscriber.username)
    expect(mailbox(page, "Scheduling")).to_be_visible()

    # when they switch to South Clinic
    page.get_by_label("Practice").select_option(label="South Clinic")

    # then they see South Clinic's mailboxes only, and North Clinic's again when switching back
    expect(mailbox(page, "Scheduling")).to_have_count(0)
    expect(mailbox(page, "Billing")).to_contain_text("Not subscribed · 1 subscriber")
    page.get_by_label("Practice").select_option(label="North Clinic")
    expect(mailbox(page, "Scheduling")).to_be_visible()
    expect(mailbox(page, "Billing")).to_contain_text("Subscribed · 2 subscribers")


def test_new_conversation_is_offered_only_in_a_mailbox_the_user_is_subscribed_to(open_page, world):
    # given a staff member subscribed to nothing
    with_password(world.staff)
    page = sign_in(open_page(), world.staff.username)

    # when they open Billing, which they are not subscribed to
    page.locator(".mailbox-select", has_text="Billing").click()

    # then they get the subscribe prompt and no + New Conversation
    expect(page.get_by_text("You are not subscribed to Billing.")).to_be_visible()
    expect(page.get_by_role("button", name="+ New Conversation")).to_have_count(0)
    expect(page.locator("#pane-thread")).not_to_contain_text("New Conversation")
    shot(page, "16-not-subscribed-no-new-conversation")

    # when they subscribe from the prompt, they can start conversations there
    page.get_by_role("button", name="Subscribe to Billing").click()
    expect(page.locator(".conversation", has_text="María García")).to_be_visible()
    expect(page.get_by_role("button", name="+ New Conversation")).to_be_visible()
    # and after unsubscribing from the menu it is gone again
    mailbox_menu(page, "Billing", "Unsubscribe")
    expect(page.get_by_text("You are not subscribed to Billing.")).to_be_visible()
    expect(page.get_by_role("button", name="+ New Conversation")).to_have_count(0)


def test_workbench_switched_off_shows_only_the_reason(open_page, world):
    # given the practice's workbench switch off, and a mailbox admin who is also the practice owner
    PracticeSetting.objects.filter(practice=world.practice, key="ui.pat_messages_mailbox.enable").update(value="F")
    PermissionGrant.objects.create(
        membership=Membership.objects.get(user=world.owner, practice=world.practice),
        permission="MAILBOX_ADMIN_PERMISSION",
    )
    with_password(world.owner)

    # when they open the Workbench
    page = sign_in(open_page(), world.owner.username)

    # then the page says the workbench is off, with a way to the settings, and nothing contradicts it
    notice = page.locator("#mailbox-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("The mailbox workbench is off for this practice")
    expect(page.get_by_text("No mailboxes yet")).to_have_count(0)
    expect(page.get_by_role("button", name="+ New Mailbox")).to_be_hidden()
    shot(page, "17-workbench-switched-off")
    notice.get_by_role("link", name="Open Practice Settings").click()
    expect(page.get_by_role("heading", name="Practice Settings")).to_be_visible()


def test_patient_name_in_a_thread_opens_the_chart_summary(open_page, world):
    # given a subscriber with María's Billing conversation open
    with_password(world.subscriber)
    page = sign_in(open_page(), world.subscriber.username)
    page.locator(".mailbox-select", has_text="Billing").click()
    page.locator(".conversation-select", has_text="María García").click()

    # when they click the patient's name in the thread header
    link = page.locator("#thread-title").get_by_role("link", name="María García")
    expect(link).to_have_attribute("title", "Open the chart summary of María García")
    shot(page, "18-thread-patient-link")
    link.click()

    # then María's chart summary opens, with her conversations
    expect(page).to_have_url(re.compile(r"/chart/"))
    expect(page.get_by_role("heading", name=re.compile("María García"))).to_be_visible()
    expect(page.locator("#chart-conversations .conversation", has_text="Billing")).to_be_visible()


def test_meaningful_use_status_follows_clinician_subscriptions(open_page, world):
    # given a clinician subscribed to no mailbox
    with_password(world.clinician)
    page = sign_in(open_page(), world.clinician.username)

    # then the Workbench says the practice does not count as doing patient messaging
    status = page.get_by_role("region", name="Meaningful Use")
    expect(status).to_contain_text("does not count as patient messaging")
    expect(status).to_contain_text("No clinician is subscribed to an active mailbox")

    # when the clinician subscribes to Billing
    mailbox_menu(page, "Billing", "Subscribe")

    # then it counts, naming the clinician
    expect(status).to_contain_text("counts as patient messaging")
    expect(status).to_contain_text(f"Clinicians subscribed to an active mailbox: {world.clinician.full_name}.")
    shot(page, "19-meaningful-use")


def test_archived_conversation_is_not_in_the_mailbox_badge(open_page, world):
    # given two unread patient messages from María in Billing, then her conversation archived
    from core import actions

    for body in ("Is my bill ready?", "Any news?"):
        actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body=body)
    actions.archive_conversation(acting_user=world.mailbox_admin, conversation_id=world.conversation.pk)
    with_password(world.subscriber)

    # when a subscriber opens the Workbench
    page = sign_in(open_page(), world.subscriber.username)

    # then neither the Billing badge nor the header counts it, while the archive still shows it unread
    expect(mailbox(page, "Billing")).to_be_visible()
    expect(mailbox(page, "Billing").locator(".badge")).to_have_count(0)
    expect(page.locator("#msg-icon-count")).to_be_hidden()
    page.locator(".mailbox-select", has_text="Billing").click()
    expect(page.get_by_text("No active conversations")).to_be_visible()
    page.get_by_role("tab", name="Archived").click()
    expect(page.locator(".conversation", has_text="María García").locator(".badge")).to_have_text("2")
    shot(page, "20-archived-not-in-badge")


def test_mailbox_admin_sets_an_auto_reply_the_patient_gets_it_marked_automatic(open_page, world):
    # given the mailbox admin, subscribed to Scheduling, and María's portal
    MailboxSubscription.objects.create(mailbox=world.scheduling, user=world.mailbox_admin)
    with_password(world.mailbox_admin)
    admin = sign_in(open_page(), world.mailbox_admin.username)
    portal = portal_sign_in(open_page(1000, 760), world.patient)

    # when the admin sets Scheduling's auto-reply from its three-dot menu
    mailbox_menu(admin, "Scheduling", "Auto-reply…")
    admin.get_by_role("textbox").last.fill("Thanks for writing to Scheduling. We answer within one working day.")
    shot(admin, "20-auto-reply-dialog")
    admin.get_by_role("button", name="Save").click()
    expect(admin.locator(".toast", has_text="Auto-reply of Scheduling saved")).to_be_visible()
    world.scheduling.refresh_from_db()
    assert world.scheduling.auto_reply == "Thanks for writing to Scheduling. We answer within one working day."

    # and María writes to Scheduling for the first time
    portal.get_by_label("Write to").select_option(label="Scheduling")
    portal.get_by_role("button", name="New message").click()
    portal.get_by_role("textbox", name="Message").fill("Can I move my appointment to Friday?")
    portal.get_by_role("button", name="Send").click()

    # then her thread shows the auto-reply, signed by the mailbox and marked automatic
    reply = portal.locator(".msg-automatic")
    expect(reply).to_contain_text("We answer within one working day.", timeout=LIVE_TIMEOUT)
    expect(reply.locator(".msg-meta")).to_contain_text("Scheduling")
    expect(reply.locator(".chip-auto")).to_have_text("Automatic reply")
    expect(portal.locator(".msg-automatic")).to_have_count(1)
    shot(portal, "21-portal-auto-reply")
    # and staff see it marked automatic in the thread
    admin.locator(".mailbox-select", has_text="Scheduling").click()
    admin.locator(".conversation-select", has_text="María García").click()
    expect(admin.locator(".msg-automatic .chip-auto")).to_have_text("Automatic reply")
    expect(admin.locator(".msg-in")).to_contain_text("move my appointment")
    shot(admin, "22-workbench-auto-reply")


def test_sender_withdraws_a_message_the_portal_shows_only_that_it_was_withdrawn_live(open_page, world):
    # given a message with a PDF the subscriber sent María, open in the workbench and in her portal
    from django.core.files.uploadedfile import SimpleUploadedFile

    from core import actions

    actions.send_staff_message(
        acting_user=world.subscriber,
        conversation_id=world.conversation.pk,
        body="Your HbA1c came back at 7.1.",
        attachments=[SimpleUploadedFile("lab.pdf", pdf_bytes(), content_type="application/pdf")],
    )
    with_password(world.subscriber)
    staff = sign_in(open_page(), world.subscriber.username)
    portal = portal_sign_in(open_page(1000, 760), world.patient)
    expect(portal.locator(".msg-in")).to_contain_text("HbA1c came back")
    staff.locator(".mailbox-select", has_text="Billing").click()
    staff.locator(".conversation-select", has_text="María García").click()
    expect(staff.locator(".msg-out")).to_contain_text("HbA1c came back")

    # when the sender withdraws it from the message's menu, with a reason
    staff.get_by_role("button", name="Options for message 1").click()
    staff.get_by_role("menuitem", name="Withdraw…").click()
    staff.get_by_label("Reason").fill("sent to the wrong patient")
    shot(staff, "23-withdraw-dialog")
    staff.get_by_role("button", name="Withdraw", exact=True).click()

    # then staff still see it, marked with who, when and why
    withdrawn = staff.locator(".msg-is-withdrawn")
    expect(withdrawn.locator(".msg-withdrawn")).to_contain_text("Withdrawn by Sam Subscriber")
    expect(withdrawn.locator(".msg-withdrawn")).to_contain_text("sent to the wrong patient")
    expect(withdrawn.locator(".msg-body")).to_contain_text("HbA1c came back")
    expect(withdrawn.get_by_role("link", name="lab.pdf")).to_be_visible()
    expect(staff.get_by_role("button", name="Options for message 1")).to_have_count(0)
    shot(staff, "24-workbench-withdrawn")
    # and the portal, live, shows only that the practice withdrew a message
    expect(portal.locator(".msg-withdrawn")).to_contain_text("The practice withdrew this message", timeout=LIVE_TIMEOUT)
    expect(portal.locator(".msg-in")).not_to_contain_text("HbA1c")
    expect(portal.get_by_role("link", name="lab.pdf")).to_have_count(0)
    expect(portal.locator(".conv-sub")).to_have_text("Message withdrawn")
    shot(portal, "25-portal-withdrawn")
    message = Message.objects.get(conversation=world.conversation)
    assert message.body == "Your HbA1c came back at 7.1."
    assert message.retract_reason == "sent to the wrong patient"


def test_message_search_lists_snippets_and_opens_the_conversation(open_page, world):
    # given messages in Billing (subscribed), one with markup in its text, and one in Scheduling (not subscribed)
    from core import actions

    with_password(world.subscriber)
    actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Your lab results are ready."
    )
    actions.send_patient_message(
        acting_patient=world.patient, mailbox_id=world.billing.pk, body="Thanks! Are the <b>résultats</b> normal?"
    )
    scheduling = actions.start_conversation(
        acting_user=world.mailbox_admin,
        mailbox_id=world.scheduling.pk,
        patient_id=world.other_patient.pk,
        via="CHART_SUMMARY",
    )
    actions.send_staff_message(
        acting_user=world.mailbox_admin,
        conversation_id=scheduling.pk,
        body="Results of the other mailbox",
        via="CHART_SUMMARY",
    )
    page = sign_in(open_page(), world.subscriber.username)

    # when they search for "result" (accent-free, a prefix)
    page.get_by_role("searchbox", name="Search messages").fill("result")
    page.get_by_role("button", name="Search", exact=True).click()

    # then both Billing messages are listed, newest first, the matching words marked, the markup shown as text
    results = page.locator("#search-results .search-result")
    expect(results).to_have_count(2)
    expect(results.nth(0).locator(".snippet")).to_have_text("Thanks! Are the <b>résultats</b> normal?")
    expect(results.nth(0).locator("mark")).to_have_text(["résultats"])
    expect(results.nth(1).locator("mark")).to_have_text(["results"])
    expect(results.nth(0)).to_contain_text("Billing")
    expect(page.locator("#search-results b")).to_have_count(0)
    expect(page.locator("#search-status")).to_contain_text("2 messages matching “result”")
    shot(page, "26-message-search")

    # when they click the first result, its conversation opens beside the results
    results.nth(0).get_by_role("button").click()
    expect(page.locator("#pane-thread")).to_contain_text("Your lab results are ready.")
    expect(page.locator("#pane-thread")).to_contain_text("Thanks! Are the <b>résultats</b> normal?")
    expect(results).to_have_count(2)
    shot(page, "27-message-search-opened")

    # and a search that matches nothing says so (once the opened thread's live stream is up: a CI run searched
    # "result" again here, the box's new text lost while the page was still settling)
    page.wait_for_function("window.pmmLive && window.pmmLive.connected")
    box = page.get_by_role("searchbox", name="Search messages")
    box.fill("zzyzx")
    expect(box).to_have_value("zzyzx")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#search-status")).to_have_text("No message in your subscribed mailboxes matches “zzyzx”.")
