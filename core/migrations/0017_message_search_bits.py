"""Message search (docs/search.md "Common words as bitmaps"), PostgreSQL only: an exact side index of the lexemes
in many messages, as bitmaps over message ids, so two common words rarely or never in one message are answered by
ANDing bitmaps instead of GIN intersecting two long posting lists.

- `core_message_search_bits (word, block, bits bit(8192))`: bit i of block b is set when message b*8192+i held the
  lexeme when it was indexed. Only blocks with a set bit are stored.
- `core_message_search_count (word, messages, indexed)`: how many indexed messages hold each lexeme, and whether it
  has bitmaps (it does once `messages` reaches SEARCH_BITS_MIN_MESSAGES).
- `core_message_search_bits_state`: one row, `high_water`: every message with an id up to it is in the counts
  and bitmaps, as it was when indexed. Newer messages are searched the GIN way.
- `core_message_search_bits_stale`: messages whose body changed after they were indexed (a row trigger on UPDATE OF
  body, which no domain action does); searched the GIN way until `manage.py search_bits` indexes them again.

Written only by `manage.py search_bits` (core/message_search_bits.py), never by a send: sends take no lock here.
The migration creates the tables empty; the first `search_bits` run builds them (minutes on 10M messages).
"""

from django.db import migrations

POSTGRES_FORWARD = [
    'CREATE TABLE IF NOT EXISTS core_message_search_bits (word text COLLATE "C" NOT NULL, block integer NOT NULL, '
    "bits bit(8192) NOT NULL, PRIMARY KEY (word, block))",
    'CREATE TABLE IF NOT EXISTS core_message_search_count (word text COLLATE "C" PRIMARY KEY, '
    "messages bigint NOT NULL, indexed boolean NOT NULL DEFAULT false)",
    "CREATE TABLE IF NOT EXISTS core_message_search_bits_state (id integer PRIMARY KEY CHECK (id = 1), "
    "high_water bigint NOT NULL)",
    "INSERT INTO core_message_search_bits_state (id, high_water) VALUES (1, 0) ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS core_message_search_bits_stale (message_id bigint PRIMARY KEY)",
    """
    CREATE OR REPLACE FUNCTION core_message_search_bits_stale_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- DO UPDATE, not DO NOTHING: the row version it writes makes a search_bits run that read the older body
        -- and deletes this row fail to serialize (and retry), instead of forgetting this edit.
        INSERT INTO core_message_search_bits_stale (message_id) VALUES (new.id)
        ON CONFLICT (message_id) DO UPDATE SET message_id = excluded.message_id;
        RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS message_search_bits_stale ON core_message",
    "CREATE TRIGGER message_search_bits_stale AFTER UPDATE OF body ON core_message FOR EACH ROW "
    "WHEN (old.body IS DISTINCT FROM new.body) EXECUTE FUNCTION core_message_search_bits_stale_add()",
]

POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS message_search_bits_stale ON core_message",
    "DROP FUNCTION IF EXISTS core_message_search_bits_stale_add()",
    "DROP TABLE IF EXISTS core_message_search_bits_stale",
    "DROP TABLE IF EXISTS core_message_search_bits_state",
    "DROP TABLE IF EXISTS core_message_search_count",
    "DROP TABLE IF EXISTS core_message_search_bits",
]


def _run(schema_editor, statements: list[str]) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in statements:
            schema_editor.execute(statement, params=None)


def forward(apps, schema_editor):
    _run(schema_editor, POSTGRES_FORWARD)


def backward(apps, schema_editor):
    _run(schema_editor, POSTGRES_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("core", "0016_message_search")]

    operations = [migrations.RunPython(forward, backward)]
