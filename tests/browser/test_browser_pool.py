"""Working the pool in the Workbench, in Debian's Chromium against a live daphne server: claim and assign from the
thread header, live to a colleague's list; internal notes from the composer, invisible in the patient's portal;
quick replies managed under Config and inserted from the composer."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from core import actions
from core.models import AssignmentChange, Conversation, Message, QuickReply
from tests.browser import test_browser_workbench as workbench
from tests.browser.test_browser_workbench import LIVE_TIMEOUT, portal_sign_in, shot, sign_in, with_password

# The browser marker, transactional database and Chromium check, and the fixtures (one browser per module).
pytestmark = workbench.pytestmark
server_url, browser, open_page = workbench.server_url, workbench.browser, workbench.open_page


def box_of(locator) -> dict:
    """Where an element is on the page; a header being rebuilt by a live change has none for a moment (its button
    detached): asked again until it has one."""
    deadline = time.monotonic() + 10
    while (box := locator.bounding_box()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box is not None, f"{locator} never had a place on the page"
    return box


def open_billing_thread(page, patient_name: str = "María García"):
    page.locator(".mailbox-select", has_text="Billing").click()
    page.locator(".conversation-select", has_text=patient_name).click()
    expect(page.locator("#thread-title")).to_contain_text(patient_name)


def test_claim_and_reassign_from_the_thread_header_show_live_in_a_colleague_s_list(open_page, world):
    # given the patient waiting in Billing, a subscriber with the thread open, and a colleague on the list
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Is my bill right?")
    with_password(world.subscriber, world.mailbox_admin)
    sam = sign_in(open_page(), world.subscriber.username)
    mia = sign_in(open_page(), world.mailbox_admin.username)
    mia.locator(".mailbox-select", has_text="Billing").click()
    row = mia.locator(".conversation", has_text="María García")
    expect(row).to_contain_text("Unassigned")
    expect(row.locator(".pill-waiting")).to_contain_text("Waiting")
    open_billing_thread(sam)

    # when the subscriber claims it
    sam.get_by_role("button", name="Claim").click()

    # then the header says so, and the colleague's list shows the assignee live
    expect(sam.locator("#thread-assignee")).to_have_text("Assigned to you")
    expect(sam.get_by_role("button", name="Claim")).to_have_count(0)
    expect(row).to_contain_text("Sam Subscriber", timeout=LIVE_TIMEOUT)
    # and the colleague's "Assigned to me" filter does not list it; "Unassigned" neither
    mia.locator("#filter-assignee").select_option("me")
    expect(mia.get_by_text("No conversation matches these filters.")).to_be_visible()
    mia.locator("#filter-assignee").select_option("all")
    expect(row).to_be_visible()

    # when the colleague reassigns it to herself with a reason, from the thread's ⋮ menu, and marks it urgent
    mia.locator(".conversation-select", has_text="María García").click()
    mia.get_by_role("button", name="Conversation options").click()
    mia.get_by_role("menuitem", name="Assign to…").click()
    mia.locator("#assign-to").select_option(label="Mia Mailboxadmin (you)")
    mia.get_by_label("Reason").fill("Sam is out this afternoon")
    mia.get_by_role("button", name="Assign", exact=True).click()
    expect(mia.locator("#thread-assignee")).to_have_text("Assigned to you")
    mia.get_by_role("button", name="Conversation options").click()
    mia.get_by_role("menuitem", name="Mark as urgent").click()
    expect(mia.locator("#thread-priority")).to_have_text("Urgent")

    # then the first subscriber's header follows live
    expect(sam.locator("#thread-assignee")).to_have_text("Assigned to Mia Mailboxadmin", timeout=LIVE_TIMEOUT)
    expect(sam.locator("#thread-priority")).to_have_text("Urgent", timeout=LIVE_TIMEOUT)
    expect(sam.locator(".conversation.selected .pill-urgent")).to_be_visible()
    # and the history lists both changes with the reason
    mia.get_by_role("button", name="Conversation options").click()
    mia.get_by_role("menuitem", name="Assignment history").click()
    history = mia.locator("#assignment-history li")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text("Sam Subscriber claimed it")
    expect(history.nth(1)).to_contain_text("Mia Mailboxadmin took it over from Sam Subscriber")
    expect(history.nth(1)).to_contain_text("Sam is out this afternoon")
    shot(mia, "pool-01-assignment-history")
    # a dialog that only shows something has one button
    expect(mia.locator("dialog .dialog-actions button")).to_have_count(1)
    mia.get_by_role("button", name="Close").click()
    changes = AssignmentChange.objects.order_by("id")
    assert [(c.assignee_id, c.reason) for c in changes] == [
        (world.subscriber.pk, ""),
        (world.mailbox_admin.pk, "Sam is out this afternoon"),
    ]
    assert Conversation.objects.get(pk=world.conversation.pk).priority == "URGENT"
    shot(sam, "pool-02-claimed-urgent")


def test_a_live_change_the_header_does_not_show_does_not_swallow_a_click_on_it(open_page, world):
    # given two subscribers in the same thread, the second one's mark-read answer in
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Is my bill right?")
    with_password(world.subscriber, world.mailbox_admin)
    sam = sign_in(open_page(), world.subscriber.username)
    mia = sign_in(open_page(), world.mailbox_admin.username)
    open_billing_thread(sam)
    open_billing_thread(mia)
    expect(mia.locator(".conversation.selected .badge")).to_have_count(0)

    # when she presses the header's ⋮ and, before she lets go, a colleague's note arrives live (the header's
    # assignee, priority and waiting time stay as they were)
    options = box_of(mia.get_by_role("button", name="Conversation options"))
    mia.mouse.move(options["x"] + options["width"] / 2, options["y"] + options["height"] / 2)
    mia.mouse.down()
    sam.get_by_role("radio", name="Internal note").click()
    sam.get_by_role("textbox", name="Internal note").fill("Ledger checked.")
    sam.get_by_role("button", name="Add note").click()
    expect(mia.locator(".msg-note")).to_contain_text("Ledger checked.", timeout=LIVE_TIMEOUT)
    mia.mouse.up()

    # then her click opened the menu (a header rebuilt between press and release would have taken the click away)
    expect(mia.get_by_role("menuitem", name="Assign to…")).to_be_visible()


def test_an_internal_note_is_marked_for_staff_and_never_reaches_the_patient_s_portal(open_page, world):
    # given a thread with one staff answer, the patient's portal open on it, and a colleague in the thread
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Can I pay later?")
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Yes, sure.")
    with_password(world.subscriber, world.mailbox_admin)
    sam = sign_in(open_page(), world.subscriber.username)
    mia = sign_in(open_page(), world.mailbox_admin.username)
    portal = portal_sign_in(open_page(1000, 760), world.patient)
    portal.locator("#portal-conversations").get_by_text("Billing").first.click()
    expect(portal.locator(".msg")).to_have_count(2)
    open_billing_thread(sam)
    open_billing_thread(mia)

    # when the subscriber switches the composer to "Internal note" and adds one
    sam.get_by_role("radio", name="Internal note").click()
    expect(sam.locator("form.composer")).to_have_class("composer composer-note")
    sam.get_by_role("textbox", name="Internal note").fill("Payment plan approved by billing lead.")
    sam.get_by_role("button", name="Add note").click()

    # then it shows in the thread, clearly marked, for both staff (the colleague's live)
    note = sam.locator(".msg-note")
    expect(note).to_contain_text("Internal note · only staff see this")
    expect(note).to_contain_text("Payment plan approved by billing lead.")
    expect(mia.locator(".msg-note")).to_contain_text("Payment plan approved", timeout=LIVE_TIMEOUT)
    sam.get_by_role("button", name="Claim").click()
    expect(sam.locator(".conversation.selected")).to_contain_text("Assigned to you")
    sam.get_by_role("button", name="Conversation options").click()
    sam.get_by_role("menuitem", name="Mark as urgent").click()
    expect(sam.locator(".conversation.selected .pill-urgent")).to_be_visible()
    shot(sam, "pool-03-internal-note")
    # (the README's picture: the list and the thread)
    sam.screenshot(
        path=str(shot(sam, "pool-readme").with_suffix(".png")), clip={"x": 280, "y": 56, "width": 1086, "height": 744}
    )
    # and a staff message after it reaches the patient, numbered without a gap, the note nowhere
    sam.get_by_role("radio", name="Reply to patient").click()
    sam.get_by_role("textbox", name="Message").fill("We set up a payment plan for you.")
    sam.get_by_role("button", name="Send").click()
    expect(portal.locator(".msg").last).to_contain_text("payment plan for you", timeout=LIVE_TIMEOUT)
    expect(portal.locator(".msg")).to_have_count(3)
    assert [int(s) for s in portal.locator(".msg").evaluate_all("els => els.map(e => e.dataset.sequence)")] == [1, 2, 3]
    expect(portal.get_by_text("Payment plan approved")).to_have_count(0)
    expect(portal.get_by_text("Internal note")).to_have_count(0)
    # and after a reload the portal still shows no trace
    portal.reload()
    portal.locator("#portal-conversations").get_by_text("Billing").first.click()
    expect(portal.locator(".msg")).to_have_count(3)
    assert "Payment plan approved" not in portal.content()
    shot(portal, "pool-04-portal-without-note")
    assert Message.objects.filter(direction="INTERNAL_NOTE").count() == 1


def test_admin_adds_a_quick_reply_and_a_colleague_inserts_it_from_the_composer(open_page, world):
    # given a mailbox admin on Config › Quick Replies, and a subscriber with a thread open
    with_password(world.mailbox_admin, world.subscriber)
    mia = sign_in(open_page(), world.mailbox_admin.username)
    sam = sign_in(open_page(), world.subscriber.username)
    open_billing_thread(sam)
    mia.locator("#config-menu-btn").click()
    mia.get_by_role("menuitem", name="Quick Replies").click()
    expect(mia.get_by_role("heading", name="Quick Replies")).to_be_visible()

    # when the admin creates two quick replies
    for title, text in (
        ("Payment plan", "We can split your balance into monthly payments. Reply YES to set it up."),
        ("Office hours", "Our billing office is open Monday to Friday, 8 am to 5 pm."),
    ):
        mia.get_by_role("button", name="+ New Quick Reply").click()
        mia.get_by_label("Title (what staff search for)").fill(title)
        mia.get_by_label("Text inserted into the message").fill(text)
        mia.get_by_role("button", name="Create quick reply").click()
        expect(mia.locator("#quick-reply-list")).to_contain_text(title)
    shot(mia, "pool-05-quick-replies-config")

    # then the colleague finds one by title in the composer and inserts it
    sam.get_by_role("textbox", name="Message").fill("Hello María, ")
    sam.get_by_role("button", name="Quick replies").click()
    sam.get_by_role("searchbox", name="Search quick replies").fill("plan")
    results = sam.locator(".quick-reply")
    expect(results).to_have_count(1)
    expect(results).to_contain_text("Payment plan")
    shot(sam, "pool-06-quick-reply-picker")
    results.click()
    expect(sam.get_by_role("textbox", name="Message")).to_have_value(
        "Hello María, We can split your balance into monthly payments. Reply YES to set it up."
    )
    sam.get_by_role("button", name="Send").click()
    expect(sam.locator(".msg-out").last).to_contain_text("monthly payments")
    assert set(QuickReply.objects.values_list("title", flat=True)) == {"Payment plan", "Office hours"}
    # and a staff member without admin rights sees the list without edit buttons
    sam.goto("/#/config/quick-replies")
    expect(sam.locator("#quick-reply-list")).to_contain_text("Office hours")
    expect(sam.get_by_role("button", name="+ New Quick Reply")).to_have_count(0)
    expect(sam.get_by_role("button", name="Edit")).to_have_count(0)


@pytest.mark.parametrize("order", ["URGENT_FIRST"])
def test_the_list_shows_urgent_first_and_the_stats_line(open_page, world, order):
    from tests.conftest import make_patient

    for n, name in enumerate(["Ada", "Ben", "Cy"]):
        patient = make_patient(world.practice, f"L-{n}", name, "Lovelace")
        actions.send_patient_message(acting_patient=patient, mailbox_id=world.billing.pk, body="hello")
    ben = Conversation.objects.get(patient__first_name="Ben")
    actions.set_conversation_priority(acting_user=world.subscriber, conversation_id=ben.pk, priority="URGENT")
    cy = Conversation.objects.get(patient__first_name="Cy")
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=cy.pk, body="answered")
    with_password(world.subscriber)
    sam = sign_in(open_page(), world.subscriber.username)
    sam.locator(".mailbox-select", has_text="Billing").click()
    expect(sam.locator("#mailbox-stats")).to_contain_text("Open 4 · Waiting 2")
    sam.locator("#filter-order").select_option(order)
    names = sam.locator(".conversation .conv-name")
    expect(names).to_have_text(["Ben Lovelace", "Cy Lovelace", "Ada Lovelace", "María García"])
    sam.get_by_text("Waiting", exact=True).click()
    expect(names).to_have_text(["Ben Lovelace", "Ada Lovelace"])
    shot(sam, "pool-07-urgent-first-waiting")


def test_a_staff_member_adds_a_note_from_the_chart_summary_without_a_subscription(open_page, world):
    from tests.graphql_client import gid

    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Two installments?")
    with_password(world.staff)
    staff = sign_in(open_page(), world.staff.username)
    staff.goto(f"/chart/{gid('Patient', world.patient.pk)}")
    expect(staff.locator(".msg-in")).to_contain_text("Two installments?")
    staff.get_by_role("radio", name="Internal note").click()
    staff.get_by_role("textbox", name="Internal note").fill("Checked with billing: fine.")
    staff.get_by_role("button", name="Add note").click()
    expect(staff.locator(".msg-note")).to_contain_text("Checked with billing: fine.")
    shot(staff, "pool-08-chart-note")
    note = Message.objects.get(direction="INTERNAL_NOTE")
    assert (note.sender_user_id, note.portal_sequence) == (world.staff.pk, None)


def test_a_thread_with_a_note_an_auto_reply_and_a_withdrawn_message(open_page, world):
    # given Billing's auto-reply, the patient writing into the archived thread (reactivated: the auto-reply
    # follows), a staff answer and a note after it: staff 1 patient, 2 automatic, 3 answer, 4 note
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, text="Thanks, noted.")
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Is my bill right?")
    actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Your HbA1c came back at 7.1."
    )
    actions.add_internal_note(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Sent to the wrong patient!"
    )
    with_password(world.subscriber, world.mailbox_admin)
    sam = sign_in(open_page(), world.subscriber.username)
    mia = sign_in(open_page(), world.mailbox_admin.username)
    portal = portal_sign_in(open_page(1000, 760), world.patient)
    portal.locator("#portal-conversations").get_by_text("Billing").first.click()
    expect(portal.locator(".msg")).to_have_count(3)
    open_billing_thread(sam)
    open_billing_thread(mia)
    expect(mia.locator(".msg")).to_have_count(4)
    expect(mia.locator("#thread-waiting")).to_have_count(0)  # answered (the auto-reply answered nothing)

    # then each kind is marked, and only messages from the practice offer "Withdraw…" (the auto-reply too, for a
    # mailbox admin); never the patient's message nor the note
    expect(mia.locator(".msg-automatic .chip-auto")).to_have_text("Automatic reply")
    expect(mia.locator(".msg-automatic")).to_contain_text("Thanks, noted.")
    expect(mia.locator(".msg-note .note-label")).to_have_text("Internal note · only staff see this")
    expect(mia.get_by_role("button", name="Options for message 1")).to_have_count(0)
    expect(mia.get_by_role("button", name="Options for message 2")).to_have_count(1)
    expect(mia.get_by_role("button", name="Options for message 3")).to_have_count(1)
    expect(mia.get_by_role("button", name="Options for message 4")).to_have_count(0)
    # the sender (not a mailbox admin) may withdraw only their own answer
    expect(sam.get_by_role("button", name="Options for message 2")).to_have_count(0)
    expect(sam.get_by_role("button", name="Options for message 4")).to_have_count(0)

    # when the sender withdraws the answer
    sam.get_by_role("button", name="Options for message 3").click()
    sam.get_by_role("menuitem", name="Withdraw…").click()
    sam.get_by_label("Reason").fill("sent to the wrong patient")
    sam.get_by_role("button", name="Withdraw", exact=True).click()

    # then both staff see it struck through with who and why, the note and the auto-reply unchanged, and the
    # patient waiting again (from the event, live for the colleague)
    for page in (sam, mia):
        withdrawn = page.locator(".msg-is-withdrawn")
        expect(withdrawn.locator(".msg-withdrawn")).to_contain_text("Withdrawn by Sam Subscriber", timeout=LIVE_TIMEOUT)
        expect(withdrawn).to_have_attribute("data-sequence", "3")
        expect(page.locator(".msg-note")).to_contain_text("Sent to the wrong patient!")
        expect(page.locator(".msg-automatic")).to_contain_text("Thanks, noted.")
        expect(page.locator("#thread-waiting")).to_contain_text("Patient waiting", timeout=LIVE_TIMEOUT)
        expect(page.locator(".conversation.selected .pill-waiting")).to_be_visible()
    expect(mia.get_by_role("button", name="Options for message 3")).to_have_count(0)
    shot(mia, "pool-09-note-automatic-withdrawn")
    # and the patient sees 1, 2, 3: their message, the auto-reply, "withdrawn"; no note anywhere
    expect(portal.locator(".msg-withdrawn")).to_contain_text("The practice withdrew this message", timeout=LIVE_TIMEOUT)
    assert [int(s) for s in portal.locator(".msg").evaluate_all("els => els.map(e => e.dataset.sequence)")] == [1, 2, 3]
    expect(portal.locator(".msg-automatic")).to_contain_text("Thanks, noted.")
    expect(portal.get_by_text("wrong patient")).to_have_count(0)
    expect(portal.get_by_text("HbA1c")).to_have_count(0)
    expect(portal.locator(".conv-sub")).to_have_text("Message withdrawn")
    shot(portal, "pool-10-portal-automatic-withdrawn")
    portal.reload()
    portal.locator("#portal-conversations").get_by_text("Billing").first.click()
    expect(portal.locator(".msg")).to_have_count(3)
    assert "wrong patient" not in portal.content()
    assert Conversation.objects.get(pk=world.conversation.pk).waiting_since is not None
