"""`manage.py search_bits`, the maintainer of the message-search bitmaps (docs/search.md): one run indexes what
was sent and moves the high water; on SQLite, which searches with FTS5, it says there is nothing to do."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from tests.domain.test_message_search import add_message

pytestmark = pytest.mark.django_db


def _run() -> str:
    err = io.StringIO()
    call_command("search_bits", wait_seconds=5, stderr=err)
    return err.getvalue()


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the SQLite answer")
def test_on_sqlite_the_command_has_nothing_to_do(world):
    assert "PostgreSQL only" in _run()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="bitmaps are PostgreSQL's (SQLite: FTS5)")
def test_one_run_indexes_what_was_sent_and_moves_the_high_water(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "SEARCH_BITS_MIN_MESSAGES": 1}
    message = add_message(world.conversation, "Your lab results are ready", 1)
    output = _run()
    with connection.cursor() as cursor:
        cursor.execute("SELECT high_water FROM core_message_search_bits_state")
        (high_water,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM core_message_search_bits WHERE word = 'results'")
        (blocks,) = cursor.fetchone()
    assert high_water >= message.pk
    assert blocks == 1
    assert f"high water {high_water}" in output
