"""Live events carry their own truth: the Workbench, chart summary and portal apply each event's payload to
what they show, without a request to /graphql, and refetch only when the server refuses a resume.

Another party acts over HTTP against the same daphne server the pages use (so its publish wakes their sockets
at once); the pages' own POSTs to /graphql are counted from that moment until the change is on screen.
"""

from __future__ import annotations

import json
import re
import urllib.request

from playwright.sync_api import Page, expect

from core.actions.conversations import send_staff_message, start_conversation
from core.models import Event
from core.tokens import issue_token
from tests.browser import test_browser_workbench as workbench
from tests.browser.test_browser_workbench import LIVE_TIMEOUT, mailbox, portal_sign_in, shot, sign_in, with_password
from tests.graphql_client import gid

# The daphne server, Chromium and page fixtures of the Workbench browser tests, and their marks.
pytestmark = workbench.pytestmark
server_url = workbench.server_url
browser = workbench.browser
open_page = workbench.open_page

PORTAL_SEND = (
    """mutation($mailboxId: ID!, $body: String) { sendPortalMessage(mailboxId: $mailboxId, body: $body) { id } }"""
)
STAFF_SEND = """mutation($id: ID!, $body: String, $via: AccessSource) {
  sendMessage(conversationId: $id, body: $body, via: $via) { id } }"""


def graphql(server_url: str, token: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{server_url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    assert not answer.get("errors"), answer
    return answer["data"]


def count_graphql_posts(page: Page) -> list[str]:
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.post_data or "") if r.method == "POST" and r.url.endswith("/graphql") else None,
    )
    return posts


def patient_writes(server_url: str, world, body: str, patient=None, mailbox=None) -> None:
    token = issue_token(patient=patient or world.patient)
    graphql(server_url, token, PORTAL_SEND, {"mailboxId": gid("Mailbox", (mailbox or world.billing).pk), "body": body})


def quiet_for(page: Page, seconds: float = 1.0) -> None:
    """Lets anything an event would have triggered (the old clients refetched 120 ms after it) go out."""
    page.wait_for_timeout(int(seconds * 1000))


def test_workbench_shows_a_patient_message_in_thread_list_and_badges_without_a_request(open_page, server_url, world):
    # given a subscriber with Billing open, María's thread open, and John's conversation more recent than hers
    johns = start_conversation(
        acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, patient_id=world.other_patient.pk
    )
    send_staff_message(acting_user=world.mailbox_admin, conversation_id=johns.pk, body="Your statement is ready.")
    with_password(world.subscriber)
    page = open_page()
    posts = count_graphql_posts(page)
    sign_in(page, world.subscriber.username)
    page.locator(".mailbox-select", has_text="Billing").click()
    rows = page.locator(".conversation-select .conv-name")
    expect(rows).to_have_text(["John Smith", "María García"])
    # the live stream up first: a list redrawn as it connects could swallow a click on the row being replaced
    page.wait_for_function("window.pmmLive && window.pmmLive.connected")
    page.locator(".conversation-select", has_text="María García").click()
    expect(page.locator("#thread-title")).to_contain_text("María García")
    page.wait_for_function("window.pmmLive && window.pmmLive.connected")
    quiet_for(page, 0.5)
    expect(page.locator("#msg-icon-count")).to_be_hidden()

    # when María writes to Billing from the portal (another party, over HTTP)
    posts.clear()
    patient_writes(server_url, world, "Is my refund on its way?")

    # then the open thread shows it, her row moves to the top with an unread badge, and the badges count it
    expect(page.locator(".msg-in")).to_contain_text("Is my refund on its way?", timeout=LIVE_TIMEOUT)
    expect(rows).to_have_text(["María García", "John Smith"])
    expect(page.locator(".conversation", has_text="María García").locator(".badge")).to_have_text("1")
    expect(mailbox(page, "Billing").locator(".badge")).to_have_text("1")
    expect(page.locator("#msg-icon-count")).to_have_text("1")
    quiet_for(page)
    # and the page asked the server nothing for it
    assert posts == [], posts
    shot(page, "20-live-payload-workbench")

    # when the subscriber works in the thread (a click), it is marked read, in one request
    page.locator(".messages").click()
    expect(page.locator("#msg-icon-count")).to_be_hidden()
    expect(mailbox(page, "Billing").locator(".badge")).to_have_count(0)
    expect(page.locator(".conversation", has_text="María García").locator(".badge")).to_have_count(0)
    quiet_for(page, 0.5)
    assert len(posts) == 1, posts
    assert "markConversationRead" in posts[0]


def test_workbench_shows_its_own_sent_message_once(open_page, server_url, world):
    # given a subscriber in María's thread
    with_password(world.subscriber)
    page = open_page()
    posts = count_graphql_posts(page)
    sign_in(page, world.subscriber.username)
    page.locator(".mailbox-select", has_text="Billing").click()
    page.locator(".conversation-select", has_text="María García").click()
    page.wait_for_function("window.pmmLive && window.pmmLive.connected")

    # when they send a message (its answer and its live event both bring it)
    posts.clear()
    page.get_by_role("textbox", name="Message").fill("We received your payment.")
    page.get_by_role("button", name="Send").click()

    # then it is shown once, and the conversation row shows the new activity from the event alone
    expect(page.locator(".msg-out")).to_have_count(1)
    expect(page.locator(".conversation", has_text="María García").locator(".conv-top .muted")).not_to_have_text(
        "", timeout=LIVE_TIMEOUT
    )
    quiet_for(page)
    expect(page.locator(".msg-out", has_text="We received your payment.")).to_have_count(1)
    assert len(posts) == 1, posts
    assert "sendMessage" in posts[0]


def test_portal_shows_a_staff_reply_without_a_request(open_page, server_url, world):
    # given María's portal with her Billing thread open, where she has written once
    patient_writes(server_url, world, "Can I pay by card?")
    page = open_page(1000, 760)
    posts = count_graphql_posts(page)
    portal_sign_in(page, world.patient)
    expect(page.locator(".msg-out")).to_contain_text("Can I pay by card?")
    page.wait_for_function("window.pmmLive && window.pmmLive.connected")
    quiet_for(page, 0.5)

    # when staff reply over HTTP
    posts.clear()
    staff_token = issue_token(user=world.subscriber)
    graphql(
        server_url, staff_token, STAFF_SEND, {"id": gid("Conversation", world.conversation.pk), "body": "Yes, by card."}
    )

    # then the thread and the conversation list show the reply, and the page asked nothing for it
    expect(page.locator(".msg-in")).to_contain_text("Yes, by card.", timeout=LIVE_TIMEOUT)
    expect(page.locator(".conversation", has_text="Billing").locator(".conv-sub")).to_have_text("Yes, by card.")
    quiet_for(page)
    assert posts == [], posts
    shot(page, "21-live-payload-portal")

    # and a first message to another mailbox (a new conversation) arrives live as well
    posts.clear()
    world.scheduling.subscriptions.create(user=world.subscriber)
    started = start_conversation(
        acting_user=world.subscriber, mailbox_id=world.scheduling.pk, patient_id=world.patient.pk
    )
    graphql(
        server_url, staff_token, STAFF_SEND, {"id": gid("Conversation", started.pk), "body": "Your visit is booked."}
    )
    expect(page.locator(".conversation", has_text="Scheduling")).to_contain_text(
        "Your visit is booked.", timeout=LIVE_TIMEOUT
    )
    expect(page.locator(".conversation-select .conv-name")).to_have_text(["Scheduling", "Billing"])
    quiet_for(page)
    assert posts == [], posts


def test_chart_summary_shows_a_patient_message_without_a_request(open_page, server_url, world):
    # given a staff member (subscribed to nothing) on María's chart summary, her Billing thread open
    with_password(world.staff)
    page = open_page()
    posts = count_graphql_posts(page)
    sign_in(page, world.staff.username)
    page.goto(f"/chart/{gid('Patient', world.patient.pk)}")
    expect(page.locator(".thread-header")).to_contain_text("Billing")
    page.wait_for_function("window.pmmLive && window.pmmLive.connected")
    quiet_for(page, 0.5)

    # when María writes
    posts.clear()
    patient_writes(server_url, world, "Please call me back.")

    # then the thread shows it and the conversation row counts it unread, with no request
    expect(page.locator(".msg-in")).to_contain_text("Please call me back.", timeout=LIVE_TIMEOUT)
    expect(page.locator("#chart-conversations .conversation", has_text="Billing").locator(".badge")).to_have_text("1")
    quiet_for(page)
    assert posts == [], posts
    shot(page, "22-live-payload-chart")


def test_refused_resume_refetches_what_the_page_shows(open_page, server_url, world):
    # given a subscriber in María's thread, whose socket the test can cut
    with_password(world.subscriber)
    page = open_page()
    cut = {"on": False}
    sent_frames: list[str] = []

    def route(ws):
        if cut["on"]:
            ws.close()
            return
        server = ws.connect_to_server()
        ws.on_message(lambda message: (sent_frames.append(str(message)), server.send(message)))

    page.route_web_socket(re.compile(r"/graphql$"), route)
    posts = count_graphql_posts(page)
    sign_in(page, world.subscriber.username)
    page.locator(".mailbox-select", has_text="Billing").click()
    page.locator(".conversation-select", has_text="María García").click()
    page.wait_for_function("window.pmmLive && window.pmmLive.connected")
    patient_writes(server_url, world, "First question")
    expect(page.locator(".msg-in")).to_contain_text("First question", timeout=LIVE_TIMEOUT)

    # when the socket drops, María writes again, and the log no longer has the page's cursor (pruned)
    cut["on"] = True
    page.evaluate("window.pmmLive.reconnect()")
    expect(page.locator("#banner")).to_contain_text("reconnecting")
    patient_writes(server_url, world, "Second question, while you were away")
    Event.objects.all().delete()
    posts.clear()
    cut["on"] = False

    # then the refused resume makes the page subscribe afresh and refetch: the missed message is shown
    expect(page.locator(".msg-in").last).to_contain_text("while you were away", timeout=LIVE_TIMEOUT)
    assert any("Thread" in post for post in posts), posts
    subscribes = [json.loads(f) for f in sent_frames if '"subscribe"' in f]
    assert "after" in subscribes[-2]["payload"]["variables"], subscribes
    assert "after" not in subscribes[-1]["payload"]["variables"], subscribes

    # and it follows live again from there
    posts.clear()
    patient_writes(server_url, world, "Third question")
    expect(page.locator(".msg-in").last).to_contain_text("Third question", timeout=LIVE_TIMEOUT)
    quiet_for(page)
    assert posts == [], posts
