"""Message search through the bitmaps of common lexemes (PostgreSQL, core/message_search_bits.py): the answers are
those of the GIN path, for messages indexed, sent after the last `search_bits` run, or changed since, and for a
lexeme that becomes common.

Here every lexeme in at least one (or two) messages counts as common, and the window of newest messages checked
first is one message, so the statement's bitmap part answers.
"""

from __future__ import annotations

import pytest
from django.db import connection

from core import message_search, message_search_bits
from core.models import Message
from tests.domain.test_message_search import ANSWERS, BODIES, LAB, add_message, bodies

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="bitmaps are PostgreSQL's (SQLite: FTS5)"),
]


@pytest.fixture(autouse=True)
def common_from(settings, monkeypatch):
    settings.MAILBOX = {**settings.MAILBOX, "SEARCH_BITS_MIN_MESSAGES": 1}
    monkeypatch.setattr(message_search, "RECENT_WINDOW", 1)


@pytest.fixture
def indexed(world) -> list[Message]:
    """The answer table's messages (test_message_search's `thread`), then a `search_bits` run."""
    thread = [add_message(world.conversation, body, 100 - i) for i, body in enumerate(BODIES)]
    result = message_search_bits.refresh(wait_seconds=5)
    assert result.settled
    assert result.high_water >= thread[-1].pk
    return thread


def both_paths(world, query: str, monkeypatch, **variables) -> tuple[list[str], list[str]]:
    found = bodies(world, query, **variables)
    with monkeypatch.context() as gin_only:
        gin_only.setattr(message_search, "USE_BITMAPS", False)
        return found, bodies(world, query, **variables)


def indexed_words() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT word FROM core_message_search_count WHERE indexed")
        return {row[0] for row in cursor.fetchall()}


def blank_bitmaps(word: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE core_message_search_bits SET bits = repeat('0', 8192)::bit(8192) WHERE word = %s", [word]
        )


@pytest.mark.parametrize(("query", "expected"), ANSWERS)
def test_the_answer_table_through_the_bitmaps(world, indexed, monkeypatch, query, expected):
    assert both_paths(world, query, monkeypatch) == (expected, expected)


def test_the_bitmaps_are_what_answers(world, indexed):
    # given the bitmaps of "normal" emptied behind the maintainer's back
    assert bodies(world, "normal") == [LAB]
    blank_bitmaps("normal")

    # then the search trusts them: the bitmap part, not GIN, answered
    assert bodies(world, "normal") == []


def test_every_word_s_bitmaps_narrow_the_candidates(world, indexed):
    # given the bitmaps of "lab" emptied behind the maintainer's back ("normal" keeps its own)
    assert bodies(world, "normal lab") == [LAB]
    blank_bitmaps("lab")

    # then a search of both words finds no candidate: the words' blocks are ANDed, not ORed
    assert bodies(world, "normal lab") == []
    assert bodies(world, "normal") == [LAB]


def test_a_message_sent_after_the_last_run_is_found(world, indexed, monkeypatch):
    # given a message newer than the bitmaps' high water, with words the bitmaps have
    add_message(world.conversation, "Normal lab visit tomorrow", 1)

    assert both_paths(world, "normal lab", monkeypatch) == (["Normal lab visit tomorrow", LAB],) * 2

    # and after the next run it is in the bitmaps
    message_search_bits.refresh(wait_seconds=5)
    blank_bitmaps("tomorrow")
    assert bodies(world, "normal lab") == ["Normal lab visit tomorrow", LAB]
    assert bodies(world, "tomorrow") == []


def test_more_new_messages_than_the_lag_allowed_are_searched_by_gin(world, indexed, settings, monkeypatch):
    settings.MAILBOX = {**settings.MAILBOX, "SEARCH_BITS_MAX_LAG": 0}
    blank_bitmaps("normal")
    add_message(world.conversation, "Another normal day", 1)

    assert bodies(world, "normal") == ["Another normal day", LAB]


def test_a_changed_body_is_found_by_its_new_words_only(world, indexed, monkeypatch):
    # given an indexed message whose body is replaced by raw SQL (no action changes a body)
    Message.objects.filter(pk=indexed[0].pk).update(body="Your prescription is at the pharmacy, results attached")

    # then its new words find it and its old ones do not, before and after the next run
    for _ in range(2):
        changed = "Your prescription is at the pharmacy, results attached"
        assert both_paths(world, "pharm results", monkeypatch) == ([changed],) * 2
        assert both_paths(world, "normal", monkeypatch) == ([], [])
        message_search_bits.refresh(wait_seconds=5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_message_search_bits_stale")
        assert cursor.fetchone()[0] == 0


def test_a_deleted_message_is_not_found(world, indexed, monkeypatch):
    Message.objects.filter(pk=indexed[0].pk).delete()

    assert both_paths(world, "normal", monkeypatch) == ([], [])


def test_a_lexeme_that_becomes_common_gets_bitmaps(world, indexed, settings, monkeypatch):
    # given "zebra" in one message while a lexeme needs two to have bitmaps
    settings.MAILBOX = {**settings.MAILBOX, "SEARCH_BITS_MIN_MESSAGES": 2}
    add_message(world.conversation, "A zebra at the lab", 3)
    message_search_bits.refresh(wait_seconds=5)
    assert "zebra" not in indexed_words()
    assert both_paths(world, "zebra lab", monkeypatch) == (["A zebra at the lab"],) * 2

    # when a second message has it and the maintainer runs
    add_message(world.conversation, "Zebra results are normal", 2)
    assert both_paths(world, "zebra", monkeypatch) == (["Zebra results are normal", "A zebra at the lab"],) * 2
    result = message_search_bits.refresh(wait_seconds=5)

    # then it has bitmaps over both, old and new, and they answer
    assert "zebra" in result.promoted
    assert "zebra" in indexed_words()
    assert both_paths(world, "zebra", monkeypatch) == (["Zebra results are normal", "A zebra at the lab"],) * 2
    assert both_paths(world, "zebra normal", monkeypatch) == (["Zebra results are normal"],) * 2
    blank_bitmaps("zebra")
    assert bodies(world, "zebra") == []
