"""Common lexemes as bitmaps over message ids (PostgreSQL; migration 0017, docs/search.md "Common words as
bitmaps"), kept by `manage.py search_bits`, never by a send.

GIN answers two common words rarely or never in one message by intersecting two long posting lists (~50 ms for
two lexemes in ~830,000 of 10M messages each). Here each lexeme in at least SEARCH_BITS_MIN_MESSAGES messages
also has one bit per message id (`core_message_search_bits`, blocks of 8,192 ids, 1 KB each), and
core/message_search.py ANDs the words' blocks (each word the OR of its lexemes') in a few ms. The answer stays
exact: the set bits are candidates, each checked with `@@` on its row, and every message the bitmaps may not
describe is checked the GIN way: ids above `high_water`, and bodies changed after they were indexed
(`core_message_search_bits_stale`).

`refresh()` moves `high_water` forward only to an id below which no message can still appear: it reads the
highest id taken (the id sequence), then waits for every transaction that was writing to core_message at that
moment to end (as CREATE INDEX CONCURRENTLY does), so a send that took its id earlier and commits later is
never skipped. It never blocks a send: it takes no lock a send waits for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import OperationalError, connection, transaction

BLOCK = 8192  # message ids per bitmap row (bit(8192), 1 KB: stored inline, never TOASTed)
CHUNK = 1_000_000  # ids per statement when indexing new messages
SETTLE_POLL_SECONDS = 0.02

# The words' bits for messages in (lo, hi]: 64 ids a bigint first (cheap integer aggregates), then 128 of those,
# gaps as zeros, one bit(8192) per (word, block), merged into what is stored.
_ADD_BITS = """
WITH w64 AS (
    SELECT l.word, m.id / 8192 AS block, (m.id %% 8192) / 64 AS k, bit_or(1::bigint << (63 - (m.id %% 64)::int)) AS w
    FROM core_message m CROSS JOIN LATERAL unnest(tsvector_to_array(m.search_document)) AS l(word)
    WHERE m.id > %(lo)s AND m.id <= %(hi)s AND l.word = ANY(%(words)s::text[])
    GROUP BY 1, 2, 3
), placed AS (
    SELECT word, block, k, w, lag(k) OVER (PARTITION BY word, block ORDER BY k) AS previous FROM w64
)
INSERT INTO core_message_search_bits (word, block, bits)
SELECT word, block, ('x' || rpad(string_agg(
    repeat('0', 16 * (k - coalesce(previous, -1) - 1)::int) || lpad(to_hex(w), 16, '0'), '' ORDER BY k
), 2048, '0'))::bit(8192)
FROM placed GROUP BY word, block
ON CONFLICT (word, block) DO UPDATE SET bits = core_message_search_bits.bits | excluded.bits
"""
_ADD_COUNTS = """
INSERT INTO core_message_search_count (word, messages)
SELECT l.word, count(*) FROM core_message m CROSS JOIN LATERAL unnest(tsvector_to_array(m.search_document)) AS l(word)
WHERE m.id > %(lo)s AND m.id <= %(hi)s GROUP BY l.word
ON CONFLICT (word) DO UPDATE SET messages = core_message_search_count.messages + excluded.messages
"""
# A re-indexed message: its bit cleared in every indexed word's block, then set again for the words it holds.
_CLEAR_ONE = """
UPDATE core_message_search_bits SET bits = set_bit(bits, %(position)s, 0)
WHERE word = ANY(%(words)s::text[]) AND block = %(block)s
"""
_SET_ONE = """
INSERT INTO core_message_search_bits (word, block, bits)
SELECT l.word, %(block)s, set_bit(repeat('0', 8192)::bit(8192), %(position)s, 1)
FROM core_message m CROSS JOIN LATERAL unnest(tsvector_to_array(m.search_document)) AS l(word)
WHERE m.id = %(id)s AND l.word = ANY(%(words)s::text[])
ON CONFLICT (word, block) DO UPDATE SET bits = core_message_search_bits.bits | excluded.bits
"""


@dataclass
class Refresh:
    """What one `refresh()` did."""

    high_water: int = 0
    indexed: int = 0  # ids newly covered (high_water moved by this much)
    promoted: list[str] = field(default_factory=list)  # lexemes that got bitmaps
    reindexed: int = 0  # changed bodies indexed again
    settled: bool = True  # False: a writer did not end within the wait; high_water stayed


def _settled_upper_bound(wait_seconds: float) -> int | None:
    """The highest message id taken, once every transaction that may still commit an id up to it has ended;
    None if one is still running after `wait_seconds`. Runs outside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT greatest((SELECT last_value FROM core_message_id_seq), (SELECT coalesce(max(id), 0) FROM "
            "core_message))"
        )
        upper = cursor.fetchone()[0]
        # Read after the id: a transaction that took an id up to `upper` holds this lock until it ends (taken when
        # its INSERT or COPY began, before the id was drawn).
        cursor.execute(
            "SELECT array_agg(DISTINCT virtualtransaction) FROM pg_locks WHERE locktype = 'relation' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND relation = 'core_message'::regclass AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()"
        )
        writers = cursor.fetchone()[0] or []
        deadline = time.monotonic() + wait_seconds
        while writers:
            cursor.execute(
                "SELECT array_agg(virtualxid) FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY(%s)",
                [writers],
            )
            writers = cursor.fetchone()[0] or []
            if writers and time.monotonic() >= deadline:
                return None
            if writers:
                time.sleep(SETTLE_POLL_SECONDS)
    return upper


def _min_messages() -> int:
    return settings.MAILBOX["SEARCH_BITS_MIN_MESSAGES"]


def _indexed_words(cursor) -> list[str]:
    cursor.execute("SELECT word FROM core_message_search_count WHERE indexed ORDER BY word")
    return [row[0] for row in cursor.fetchall()]


def _refresh_once(upper: int | None, result: Refresh) -> None:
    outer = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        # One snapshot for the run: the bodies read, the stale rows deleted and high_water are one state.
        if not outer:  # inside a caller's transaction (tests), that transaction's snapshot is the run's
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SELECT high_water FROM core_message_search_bits_state WHERE id = 1 FOR UPDATE")
        low = cursor.fetchone()[0]
        high = low if upper is None else max(low, upper)
        indexed = _indexed_words(cursor)
        # Bodies changed after they were indexed: indexed again from this snapshot. The trigger's upsert makes this
        # DELETE fail to serialize if an edit committed after the snapshot (the run is retried).
        cursor.execute("SELECT message_id FROM core_message_search_bits_stale WHERE message_id <= %s", [high])
        stale = sorted(row[0] for row in cursor.fetchall())
        for message_id in stale:
            if message_id > low or not indexed:
                continue  # above the old high water: indexed below with the new messages
            place = {"block": message_id // BLOCK, "position": message_id % BLOCK, "id": message_id, "words": indexed}
            cursor.execute(_CLEAR_ONE, place)
            cursor.execute(_SET_ONE, place)
            result.reindexed += 1
        if stale:
            cursor.execute("DELETE FROM core_message_search_bits_stale WHERE message_id = ANY(%s)", [stale])
        for lo in range(low, high, CHUNK):
            hi = min(lo + CHUNK, high)
            if indexed:
                cursor.execute(_ADD_BITS, {"lo": lo, "hi": hi, "words": indexed})
            cursor.execute(_ADD_COUNTS, {"lo": lo, "hi": hi})
        # Lexemes now common enough get bitmaps over every indexed message, old ones included.
        cursor.execute(
            "SELECT word FROM core_message_search_count WHERE NOT indexed AND messages >= %s ORDER BY word",
            [_min_messages()],
        )
        promoted = [row[0] for row in cursor.fetchall()]
        if promoted:
            cursor.execute(_ADD_BITS, {"lo": 0, "hi": high, "words": promoted})
            cursor.execute("UPDATE core_message_search_count SET indexed = true WHERE word = ANY(%s)", [promoted])
        cursor.execute("UPDATE core_message_search_bits_state SET high_water = %s WHERE id = 1", [high])
    result.high_water, result.indexed, result.promoted = high, high - low, promoted


def refresh(*, wait_seconds: float = 30.0, attempts: int = 5) -> Refresh:
    """Indexes the messages above high_water (and changed bodies), gives newly common lexemes their bitmaps and
    moves high_water. Safe to run while messages are sent, and from several processes (one waits for the other)."""
    if connection.vendor != "postgresql":
        return Refresh()
    upper = _settled_upper_bound(wait_seconds)
    for attempt in range(attempts):
        result = Refresh(settled=upper is not None)
        try:
            _refresh_once(upper, result)
            return result
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != "40001" or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
