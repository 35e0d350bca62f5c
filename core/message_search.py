"""Message search (SPEC §6): words in any order, each a prefix of a word of the message, ignoring case and
accents; newest first. PostgreSQL answers from the GIN index of `core_message.search_document`, SQLite from the
FTS5 table `core_message_search` (migration 0013). Snippets are built here, the same on both databases.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
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


# PostgreSQL, in two statements (docs/performance.md has the measurements behind each part):
# 1. each query word becomes the lexemes it is a prefix of, from core_message_search_word (one btree range per
#    word), and those build the tsquery: GIN then intersects exact posting lists instead of building a bitmap of
#    every row a prefix matches; a word no message has leaves no query, and nothing is scanned. Then one
#    statement, built for those lexemes, does the rest:
# 2. the newest RECENT_WINDOW messages (the message_recent index, from the cursor on) are checked first: a word in
#    more than about 2 % of messages fills a page there, where GIN would have to sort every match;
# 3. otherwise the matches are rare: GIN finds all of them (a materialized CTE, so the planner cannot walk the
#    whole table newest first on a misestimate; PostgreSQL computes a CTE only when it is read, here only when
#    the window fell short), each is checked against the mailboxes by its conversation's key, the newest kept.
#    When every word's lexemes are common ones with bitmaps (core/message_search_bits.py), the candidates are
#    the set bits of the AND of the words' bitmaps (each word the OR of its lexemes'), plus every message the
#    bitmaps may not describe (newer than their high water, a body changed since), each checked with `@@`: the
#    same answer without GIN intersecting two long posting lists. More than SEARCH_BITS_MAX_LAG newer messages
#    (the maintainer behind): GIN as before.
# The mailboxes searched are the caller's queryset, run once inside the statement.
RECENT_WINDOW = 1000
MAX_LEXEMES_PER_WORD = 64  # beyond, the word stays a prefix (`w:*`): a short, common prefix, met in the window
USE_BITMAPS = True  # False: GIN only (tests compare the two answers)

# 1. Each query word's lexemes (at most MAX_LEXEMES_PER_WORD + 1, to tell "too many"), and whether each has bitmaps:
# read first, so that the search statement is built for them (a word no message has: no statement at all).
_EXPANSION = """
SELECT p.i, w.word, c.indexed IS TRUE FROM unnest(%(prefixes)s::text[]) WITH ORDINALITY AS p(prefix, i)
CROSS JOIN LATERAL (
    SELECT s.word FROM core_message_search_word s WHERE s.word LIKE p.prefix || '%%' ORDER BY s.word LIMIT %(most)s + 1
) w
LEFT JOIN core_message_search_count c ON c.word = w.word
ORDER BY p.i, w.word
"""
_IN_MAILBOXES = "(SELECT c.mailbox_id FROM core_conversation c WHERE c.id = {row}.conversation_id) = ANY(scope.ids)"
# 2.-3. The query is a scalar subquery (an InitPlan, as opaque to the planner as when it was computed in here).
_POSTGRES = f"""
WITH search AS (
    SELECT %(query)s::tsquery AS query
), scope AS (
    SELECT ARRAY({{scope}}) AS ids
), recent AS (
    SELECT m.id, m.sent_at, m.conversation_id, m.search_document FROM core_message m
    WHERE true{{seek}} ORDER BY m.sent_at DESC, m.id DESC LIMIT %(window)s
), checked AS (
    -- `recent` read once, inlined: the scan stops at the page's last hit instead of reading the whole window
    SELECT (
        SELECT count(*) FROM (
            SELECT 1 FROM core_message m WHERE true{{seek}} ORDER BY m.sent_at DESC, m.id DESC LIMIT %(window)s
        ) w
    ) AS scanned, ARRAY(
        SELECT r.id FROM recent r, scope
        WHERE r.search_document @@ (SELECT query FROM search) AND {_IN_MAILBOXES.format(row="r")}
        ORDER BY r.sent_at DESC, r.id DESC LIMIT %(limit)s
    ) AS ids
), tail AS MATERIALIZED (
    SELECT m.id FROM core_message m
    WHERE %(covered)s AND m.id > (SELECT high_water FROM core_message_search_bits_state)
    ORDER BY m.id LIMIT %(lag)s + 1
), bitmapped AS (
    SELECT %(covered)s AND (SELECT count(*) FROM tail) <= %(lag)s AS ok
), blocks AS (
    {{blocks}}
), candidates AS (
    SELECT k.block::bigint * 8192 + p.position - 1 AS id FROM blocks k
    CROSS JOIN LATERAL unnest(array_positions(string_to_array(k.bits::text, NULL), '1')) AS p(position)
    WHERE bit_count(k.bits) > 0
    UNION SELECT t.id FROM tail t
    UNION SELECT s.message_id FROM core_message_search_bits_stale s WHERE (SELECT ok FROM bitmapped)
), candidate_rows AS MATERIALIZED (
    -- by primary key, `@@` checked after (a CTE): in one WHERE the planner asked GIN again (42 ms)
    SELECT m.id, m.sent_at, m.conversation_id, m.search_document FROM core_message m
    WHERE (SELECT ok FROM bitmapped) AND m.id = ANY(ARRAY(SELECT c.id FROM candidates c)){{seek}}
), hits AS MATERIALIZED (
    SELECT m.id, m.sent_at, m.conversation_id FROM core_message m
    WHERE NOT (SELECT ok FROM bitmapped) AND m.search_document @@ (SELECT query FROM search){{seek}}
    UNION ALL
    SELECT r.id, r.sent_at, r.conversation_id FROM candidate_rows r
    WHERE r.search_document @@ (SELECT query FROM search)
)
SELECT CASE
    WHEN cardinality(checked.ids) >= %(limit)s OR checked.scanned < %(window)s THEN checked.ids
    ELSE ARRAY(
        SELECT h.id FROM hits h, scope WHERE {_IN_MAILBOXES.format(row="h")}
        ORDER BY h.sent_at DESC, h.id DESC LIMIT %(limit)s
    )
END FROM checked
"""
# The AND of the words' bitmaps, block by block, each word the OR of its lexemes'. A word of one lexeme reads its
# rows by the primary key as they are, and the words meet in a join on the block: no aggregate, no sort (grouping
# every (word, block) row, then every block, was 13 of the 16 ms of a two-common-word search on 10M messages; the
# join takes 6).
_ONE_LEXEME = "(SELECT block, bits FROM core_message_search_bits WHERE word = %(lexemes{k})s)"
_SEVERAL_LEXEMES = (
    "(SELECT block, bit_or(bits) AS bits FROM core_message_search_bits WHERE word = ANY(%(lexemes{k})s::text[]) "
    "GROUP BY block)"
)
_NO_BLOCKS = "SELECT NULL::integer AS block, NULL::bit(8192) AS bits WHERE false"


def _quoted(lexeme: str) -> str:
    """A lexeme as a tsquery operand ('it''s'). Lexemes hold no ASCII punctuation (read as spaces), so this is belt
    and braces."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _blocks(lexemes: list[list[str]], params: dict[str, object]) -> str:
    sources = []
    for k, word_lexemes in enumerate(lexemes):
        if len(word_lexemes) == 1:
            params[f"lexemes{k}"] = word_lexemes[0]
            sources.append(_ONE_LEXEME.format(k=k))
        else:
            params[f"lexemes{k}"] = word_lexemes
            sources.append(_SEVERAL_LEXEMES.format(k=k))
    joined = " JOIN ".join(f"{source} w{k}" + (" USING (block)" if k else "") for k, source in enumerate(sources))
    bits = " & ".join(f"w{k}.bits" for k in range(len(sources)))
    return f"SELECT block, {bits} AS bits FROM {joined} WHERE (SELECT ok FROM bitmapped)"


def _expansion(cursor, words: list[str]) -> tuple[str, list[list[str]] | None] | None:
    """The tsquery for `words`, and each word's lexemes when every one has bitmaps (else None); None when a word
    is a prefix of no lexeme (nothing can match)."""
    cursor.execute(_EXPANSION, {"prefixes": words, "most": MAX_LEXEMES_PER_WORD})
    found: dict[int, list[tuple[str, bool]]] = {}
    for i, lexeme, indexed in cursor.fetchall():
        found.setdefault(i, []).append((lexeme, indexed))
    if len(found) < len(words):
        return None
    terms, covered = [], USE_BITMAPS
    for i, word in enumerate(words, start=1):
        lexemes = found[i]
        if len(lexemes) > MAX_LEXEMES_PER_WORD:
            terms.append(_quoted(word) + ":*")
            covered = False
        else:
            terms.append("(" + " | ".join(_quoted(lexeme) for lexeme, _ in lexemes) + ")")
            covered = covered and all(indexed for _, indexed in lexemes)
    lexemes = [[lexeme for lexeme, _ in found[i]] for i in range(1, len(words) + 1)] if covered else None
    return " & ".join(terms), lexemes


_SQLITE = """
SELECT m.id FROM core_message_search s JOIN core_message m ON m.id = s.rowid
JOIN core_conversation c ON c.id = m.conversation_id
WHERE core_message_search MATCH %(query)s AND c.mailbox_id IN ({scope}){seek}
ORDER BY m.sent_at DESC, m.id DESC LIMIT %(limit)s
"""
_SEEK = " AND (m.sent_at, m.id) < (%(sent_at)s, %(message_id)s)"


def _embedded(mailboxes: tuple[str, Sequence[object]], params: dict[str, object]) -> str:
    """The scope's SQL with its parameters renamed into `params` (`%(scope0)s`, ...), to run inside ours."""
    sql, values = mailboxes
    pieces = sql.split("%s")
    if len(pieces) != len(values) + 1:  # a "%s" that is not a placeholder (none in a plain filter)
        raise ValueError(f"cannot embed {sql!r}")
    embedded = [pieces[0]]
    for i, (value, piece) in enumerate(zip(values, pieces[1:], strict=True)):
        params[f"scope{i}"] = value
        embedded.append(f"%(scope{i})s{piece}")
    return "".join(embedded)


def matching_message_ids(
    words: list[str], mailboxes: tuple[str, Sequence[object]], *, after: Position | None, limit: int
) -> list[int]:
    """Ids of the messages of `mailboxes` (the SQL and parameters of a query of mailbox ids) having every word as
    a prefix of one of theirs, newest first: one statement."""
    if not words or limit <= 0:
        return []
    params: dict[str, object] = {"limit": limit}
    seek = ""
    if after is not None:
        seek = _SEEK
        params["sent_at"] = connection.ops.adapt_datetimefield_value(after.sent_at)
        params["message_id"] = after.message_id
    scope = _embedded(mailboxes, params)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            expansion = _expansion(cursor, words)
            if expansion is None:
                return []
            query, lexemes = expansion
            params.update(query=query, covered=lexemes is not None, window=RECENT_WINDOW)
            params["lag"] = settings.MAILBOX["SEARCH_BITS_MAX_LAG"]
            blocks = _NO_BLOCKS if lexemes is None else _blocks(lexemes, params)
            cursor.execute(_POSTGRES.format(scope=scope, seek=seek, blocks=blocks), params)
            return list(cursor.fetchone()[0])
        # Words are letters and digits only (search_words), so nothing in them is FTS5 query syntax.
        params["query"] = " ".join(f'"{w}"*' for w in words)
        cursor.execute(_SQLITE.format(scope=scope, seek=seek), params)
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


_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")


def _matching_spans(body: str, query_words: list[str]) -> list[tuple[int, int]]:
    """The spans of the body's words that start with a query word. An ASCII body (most of them) takes the short
    way, with the same answer: its words are runs of ASCII letters and digits, and one folds to its lowercase."""
    if body.isascii():
        prefixes = tuple(query_words)
        return [m.span() for m in _ASCII_WORD.finditer(body) if m.group().lower().startswith(prefixes)]
    return [(s, e) for s, e in _words_with_spans(body) if _matches(body[s:e], query_words)]


def snippet(body: str, query_words: list[str]) -> list[Segment]:
    """The part of `body` around its first matching word, as plain-text segments, matching words highlighted.

    Segments are text, never markup: a client shows each as text, so a body holding HTML shows as typed.
    "…" marks a cut at either end."""
    spans = _matching_spans(body, query_words)
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
