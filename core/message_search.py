"""Message search (SPEC §6): words in any order, each a prefix of a word of the message, ignoring case and
accents; newest first. PostgreSQL answers from the GIN index of `core_message.search_document`, SQLite from the
FTS5 table `core_message_search` (migration 0013). Snippets are built here, the same on both databases.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

from django.db import connection, transaction

from core.text import search_words

MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 10
SNIPPET_CONTEXT_CHARS = 80  # shown before the first match; the snippet ends about twice that after it


@dataclass(frozen=True)
class Position:
    """A place in the result order (newest first): after `sent_at`/`message_id` come older messages."""

    sent_at: dt.datetime
    message_id: int


# PostgreSQL, in up to three statements (docs/performance.md has the measurements behind each):
# 1. each query word becomes the lexemes it is a prefix of, from core_message_search_word (one btree range per
#    word): GIN then intersects exact posting lists instead of building a bitmap of every row a prefix matches;
#    a word no message has ends the search with no answer;
# 2. the newest RECENT_WINDOW messages (the message_recent index, from the cursor on) are checked first: a word in
#    more than about 2 % of messages fills a page there, where GIN would have to sort every match;
# 3. otherwise the matches are rare: GIN finds all of them (a materialized CTE, so the planner cannot walk the
#    whole table newest first on a misestimate), each is checked against the mailboxes by its conversation's key,
#    and the newest are kept.
RECENT_WINDOW = 1000
MAX_LEXEMES_PER_WORD = 64  # beyond, the word stays a prefix (`w:*`): a short, common prefix, met in the window

_EXPAND = """
SELECT p.i, w.word FROM unnest(%(prefixes)s::text[]) WITH ORDINALITY AS p(prefix, i)
CROSS JOIN LATERAL (
    SELECT s.word FROM core_message_search_word s WHERE s.word LIKE p.prefix || '%%' ORDER BY s.word LIMIT %(most)s
) w
"""
_IN_MAILBOXES = "(SELECT c.mailbox_id FROM core_conversation c WHERE c.id = {row}.conversation_id) = ANY(%(mailboxes)s)"
_RECENT = f"""
WITH recent AS MATERIALIZED (
    SELECT m.id, m.sent_at, m.conversation_id, m.search_document FROM core_message m
    WHERE true{{seek}} ORDER BY m.sent_at DESC, m.id DESC LIMIT %(window)s
)
SELECT (SELECT count(*) FROM recent), ARRAY(
    SELECT r.id FROM recent r
    WHERE r.search_document @@ %(query)s::tsquery AND {_IN_MAILBOXES.format(row="r")}
    ORDER BY r.sent_at DESC, r.id DESC LIMIT %(limit)s
)
"""
_ALL_MATCHES = f"""
WITH hits AS MATERIALIZED (
    SELECT m.id, m.sent_at, m.conversation_id FROM core_message m
    WHERE m.search_document @@ %(query)s::tsquery{{seek}}
)
SELECT h.id FROM hits h WHERE {_IN_MAILBOXES.format(row="h")}
ORDER BY h.sent_at DESC, h.id DESC LIMIT %(limit)s
"""
_SQLITE = """
SELECT m.id FROM core_message_search s JOIN core_message m ON m.id = s.rowid
JOIN core_conversation c ON c.id = m.conversation_id
WHERE core_message_search MATCH %(query)s AND c.mailbox_id IN ({mailboxes}){seek}
ORDER BY m.sent_at DESC, m.id DESC LIMIT %(limit)s
"""
_SEEK = " AND (m.sent_at, m.id) < (%(sent_at)s, %(message_id)s)"


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def _postgres_tsquery(cursor, words: list[str]) -> str | None:
    """`('bill' | 'billing') & 'tuesday'`, or None when a word starts no lexeme of any message."""
    cursor.execute(_EXPAND, {"prefixes": words, "most": MAX_LEXEMES_PER_WORD + 1})
    lexemes: dict[int, list[str]] = {}
    for i, word in cursor.fetchall():
        lexemes.setdefault(i, []).append(word)
    terms = []
    for i, word in enumerate(words, start=1):
        found = lexemes.get(i)
        if not found:
            return None
        if len(found) > MAX_LEXEMES_PER_WORD:
            terms.append(f"{_lexeme(word)}:*")
        else:
            terms.append("(" + " | ".join(_lexeme(w) for w in found) + ")")
    return " & ".join(terms)


def _postgres_ids(params: dict, seek: str, words: list[str], mailbox_ids: list[int]) -> list[int]:
    with connection.cursor() as cursor:
        query = _postgres_tsquery(cursor, words)
        if query is None:
            return []
        params.update(query=query, mailboxes=list(mailbox_ids), window=RECENT_WINDOW)
        cursor.execute(_RECENT.format(seek=seek), params)
        scanned, ids = cursor.fetchone()
        if len(ids) >= params["limit"] or scanned < RECENT_WINDOW:  # a full page, or no older message left
            return list(ids)
    with transaction.atomic(), connection.cursor() as cursor:
        # The GIN probe's estimate passes jit_above_cost on a big table, and compiling it costs more than running
        # it (measured: 300 ms of JIT for a 40 ms probe on 10M messages).
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_ALL_MATCHES.format(seek=seek), params)
        return [row[0] for row in cursor.fetchall()]


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
        return _postgres_ids(params, seek, words, mailbox_ids)
    # Words are letters and digits only (search_words), so nothing in them is FTS5 query syntax.
    params["query"] = " ".join(f'"{w}"*' for w in words)
    names = []
    for i, pk in enumerate(mailbox_ids):
        params[f"mailbox{i}"] = pk
        names.append(f"%(mailbox{i})s")
    with connection.cursor() as cursor:
        cursor.execute(_SQLITE.format(mailboxes=", ".join(names), seek=seek), params)
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
