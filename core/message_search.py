"""Message search (SPEC §6): words in any order, each a prefix of a word of the message, ignoring case and
accents; newest first. PostgreSQL answers from the GIN index of `core_message.search_document`, SQLite from the
FTS5 table `core_message_search` (migration 0013). Snippets are built here, the same on both databases.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

from django.db import connection

from core.text import search_words

MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 10
SNIPPET_CONTEXT_CHARS = 80  # shown before the first match; the snippet ends about twice that after it


@dataclass(frozen=True)
class Position:
    """A place in the result order (newest first): after `sent_at`/`message_id` come older messages."""

    sent_at: dt.datetime
    message_id: int


# PostgreSQL: the planner picks between the GIN bitmap (rare words: few rows, then sorted) and a walk of the
# message_recent index newest first, checking each row's tsvector (common words: the page fills after a few rows).
_POSTGRES = """
SELECT m.id FROM core_message m JOIN core_conversation c ON c.id = m.conversation_id
WHERE m.search_document @@ to_tsquery('mailbox_search', %(query)s) AND c.mailbox_id = ANY(%(mailboxes)s){seek}
ORDER BY m.sent_at DESC, m.id DESC LIMIT %(limit)s
"""
_SQLITE = """
SELECT m.id FROM core_message_search s JOIN core_message m ON m.id = s.rowid
JOIN core_conversation c ON c.id = m.conversation_id
WHERE core_message_search MATCH %(query)s AND c.mailbox_id IN ({mailboxes}){seek}
ORDER BY m.sent_at DESC, m.id DESC LIMIT %(limit)s
"""
_SEEK = " AND (m.sent_at, m.id) < (%(sent_at)s, %(message_id)s)"


def matching_message_ids(words: list[str], mailbox_ids: list[int], *, after: Position | None, limit: int) -> list[int]:
    """Ids of the messages of these mailboxes having every word as a prefix of one of theirs, newest first."""
    if not words or not mailbox_ids or limit <= 0:
        return []
    params: dict[str, object] = {"limit": limit}
    seek = ""
    if after is not None:
        seek = _SEEK
        params["sent_at"] = connection.ops.adapt_datetimefield_value(after.sent_at)
        params["message_id"] = after.message_id
    if connection.vendor == "postgresql":
        # Words are letters and digits only (search_words), so nothing in them is tsquery syntax.
        params.update(query=" & ".join(f"{w}:*" for w in words), mailboxes=list(mailbox_ids))
        sql = _POSTGRES.format(seek=seek)
    else:
        params["query"] = " ".join(f'"{w}"*' for w in words)
        names = []
        for i, pk in enumerate(mailbox_ids):
            params[f"mailbox{i}"] = pk
            names.append(f"%(mailbox{i})s")
        sql = _SQLITE.format(mailboxes=", ".join(names), seek=seek)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


# ---- snippets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    text: str
    highlighted: bool


def _is_word_character(ch: str) -> bool:
    return (ch.isalnum() and ch != "_") or unicodedata.combining(ch) != 0


def _words_with_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, ch in enumerate(text):
        if _is_word_character(ch):
            if start is None:
                start = i
        elif start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(text)))
    return spans


def _matches(word: str, query_words: list[str]) -> bool:
    # A word of the text can fold to several ("ﬁle" -> "file"; "l'été" is split before): any of them may match.
    return any(part.startswith(q) for part in search_words(word) for q in query_words)


def snippet(body: str, query_words: list[str]) -> list[Segment]:
    """The part of `body` around its first matching word, as plain-text segments, matching words highlighted.

    Segments are text, never markup: a client shows each as text, so a body holding HTML shows as typed.
    "…" marks a cut at either end."""
    spans = [(s, e) for s, e in _words_with_spans(body) if _matches(body[s:e], query_words)]
    if not spans:
        start, end = 0, min(len(body), 2 * SNIPPET_CONTEXT_CHARS)
    else:
        first = spans[0][0]
        start = max(0, first - SNIPPET_CONTEXT_CHARS)
        end = min(len(body), first + 2 * SNIPPET_CONTEXT_CHARS)
    # Cut at whitespace, not inside a word.
    if start > 0:
        space = body.find(" ", start, spans[0][0] if spans else end)
        start = space + 1 if space >= 0 else start
    if end < len(body):
        space = body.rfind(" ", max(start, spans[0][1] if spans else start), end)
        end = space if space > start else end
    segments: list[Segment] = []

    def add(text: str, highlighted: bool) -> None:
        if not text:
            return
        if segments and segments[-1].highlighted == highlighted:
            segments[-1] = Segment(segments[-1].text + text, highlighted)
        else:
            segments.append(Segment(text, highlighted))

    if start > 0:
        add("…", False)
    cursor = start
    for s, e in spans:
        if s < start or e > end:
            continue
        add(body[cursor:s], False)
        add(body[s:e], True)
        cursor = e
    add(body[cursor:end], False)
    if end < len(body):
        add("…", False)
    return segments
