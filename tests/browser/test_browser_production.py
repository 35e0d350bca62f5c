"""The Workbench with DEBUG off, as deployed: a real daphne process serving `config.asgi:application`, its
stylesheet and scripts served by WhiteNoise, live updates over the socket, driven in Debian's Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import expect, sync_playwright

from core import actions
from tests.browser.test_browser_workbench import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LIVE_TIMEOUT,
    mailbox,
    shot,
    sign_in,
    with_password,
)
from tests.server_processes import start_daphne

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("REQUIRE_BROWSER"),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


@pytest.fixture
def async_unsafe_allowed(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def test_the_workbench_works_with_debug_off(world, tmp_path, async_unsafe_allowed):
    # given a production-like server process (DEBUG off) and a subscriber of Billing
    server = start_daphne(tmp_path)
    failed: list[str] = []
    try:
        with_password(world.subscriber)
        static_status, headers, _ = server.get("/static/web/css/app.css")
        assert static_status == 200
        assert headers["Content-Type"].startswith("text/css")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(base_url=server.url, viewport={"width": 1366, "height": 800})
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("pageerror", lambda error: failed.append(f"page error: {error}"))

            # when they sign in
            sign_in(page, world.subscriber.username)

            # then the Workbench renders styled (the stylesheet arrived) with their mailboxes
            expect(mailbox(page, "Billing")).to_be_visible()
            display = page.evaluate("getComputedStyle(document.querySelector('.mailbox')).display")
            assert display != "inline", "the stylesheet did not apply"
            page.locator(".mailbox-select", has_text="Billing").click()
            expect(page.locator(".conversation", has_text="María García")).to_be_visible()
            # and a message a colleague sends arrives live over the socket
            actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Front Desk")
            # Playwright's loop gives this block a context of its own, and Django a connection of its own in it:
            # closed here, so the test database can be dropped at the end of the run.
            connections.close_all()
            expect(mailbox(page, "Front Desk")).to_be_visible(timeout=LIVE_TIMEOUT)
            shot(page, "20-workbench-debug-off")
            context.close()
            browser.close()
    finally:
        server.stop()
    assert failed == []
