"""Message search (SPEC §6): a full-text index of message bodies kept by the database, and the newest-first order.

PostgreSQL: the text search configuration `mailbox_search` is `simple` (no stemming, no stop words: a prefix of
any word matches) with the `unaccent` dictionary first, so "García" and "garcia" are one lexeme. The stored
generated column `core_message.search_document` holds each body's tsvector (ASCII punctuation read as spaces, so
"$25.00" is the words 25 and 00 and "follow-up" is follow and up, as on SQLite), and a GIN index serves `@@`.
PostgreSQL computes the column on every INSERT and UPDATE (ORM, raw SQL, COPY): no writer has to remember it.
`core_message_search_word` lists every lexeme once, for prefix expansion (see LEXICON_FORWARD).
Adding the column rewrites core_message once; docs/performance.md has the time it takes on the bench data.

SQLite: an FTS5 table `core_message_search` (rowid = message id, tokenizer `unicode61 remove_diacritics 2`) kept by
triggers on core_message; they write `mailbox_search_words(body)`, the words folded by `core.text.search_words`,
a function the project's SQLite backend (core/sqlite) registers on every connection.

Both: an index on (sent_at DESC, id DESC), the result order, which PostgreSQL walks when a query's words are common.
"""

from django.db import migrations, models

# Every printable ASCII character that is not a letter, a digit or a space (0x21-0x2F, 0x3A-0x40, 0x5B-0x60,
# 0x7B-0x7E), written as regular-expression code points so no database collation or locale changes what it matches.
ASCII_PUNCTUATION = r"[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]"

# Every lexeme of every message, once: a query word expands to the lexemes it is a prefix of (one btree range), and
# the GIN index is asked for those exact lexemes. A prefix (`bill:*`) makes GIN collect every matching row into a
# bitmap before intersecting, about a second for two common words of 10M messages; exact lexemes intersect their
# posting lists. Kept by a statement trigger on INSERT and UPDATE; a lexeme no message has any more only costs an
# empty probe, so deletes leave it.
LEXICON = "core_message_search_word"
LEXICON_FORWARD = [
    f'CREATE TABLE IF NOT EXISTS {LEXICON} (word text COLLATE "C" PRIMARY KEY)',
    f"""
    CREATE OR REPLACE FUNCTION core_message_search_word_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {LEXICON} (word)
        SELECT DISTINCT w.lexeme FROM new_rows m CROSS JOIN LATERAL unnest(m.search_document) AS w
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS message_search_word_insert ON core_message",
    "CREATE TRIGGER message_search_word_insert AFTER INSERT ON core_message REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_message_search_word_add()",
    "DROP TRIGGER IF EXISTS message_search_word_update ON core_message",
    "CREATE TRIGGER message_search_word_update AFTER UPDATE ON core_message REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_message_search_word_add()",
    f"""
    INSERT INTO {LEXICON} (word)
    SELECT DISTINCT w.lexeme FROM core_message m CROSS JOIN LATERAL unnest(m.search_document) AS w
    ON CONFLICT DO NOTHING
    """,
]

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    """
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'mailbox_search') THEN
            CREATE TEXT SEARCH CONFIGURATION mailbox_search (COPY = pg_catalog.simple);
        END IF;
    END $$
    """,
    "ALTER TEXT SEARCH CONFIGURATION mailbox_search ALTER MAPPING FOR word, hword, hword_part WITH unaccent, simple",
    "ALTER TABLE core_message ADD COLUMN IF NOT EXISTS search_document tsvector GENERATED ALWAYS AS "
    f"(to_tsvector('mailbox_search'::regconfig, regexp_replace(body, '{ASCII_PUNCTUATION}', ' ', 'g'))) STORED",
    "CREATE INDEX IF NOT EXISTS message_search_document ON core_message USING gin (search_document)",
    *LEXICON_FORWARD,
]

POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS message_search_word_update ON core_message",
    "DROP TRIGGER IF EXISTS message_search_word_insert ON core_message",
    "DROP FUNCTION IF EXISTS core_message_search_word_add()",
    f"DROP TABLE IF EXISTS {LEXICON}",
    "DROP INDEX IF EXISTS message_search_document",
    "ALTER TABLE core_message DROP COLUMN IF EXISTS search_document",
    "DROP TEXT SEARCH CONFIGURATION IF EXISTS mailbox_search",
]

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS core_message_search USING fts5(words, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS message_search_insert AFTER INSERT ON core_message BEGIN "
    "INSERT INTO core_message_search (rowid, words) VALUES (new.id, mailbox_search_words(new.body)); END",
    "CREATE TRIGGER IF NOT EXISTS message_search_update AFTER UPDATE OF id, body ON core_message BEGIN "
    "DELETE FROM core_message_search WHERE rowid = old.id; "
    "INSERT INTO core_message_search (rowid, words) VALUES (new.id, mailbox_search_words(new.body)); END",
    "CREATE TRIGGER IF NOT EXISTS message_search_delete AFTER DELETE ON core_message BEGIN "
    "DELETE FROM core_message_search WHERE rowid = old.id; END",
    "DELETE FROM core_message_search",
    "INSERT INTO core_message_search (rowid, words) SELECT id, mailbox_search_words(body) FROM core_message",
]

SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS message_search_delete",
    "DROP TRIGGER IF EXISTS message_search_update",
    "DROP TRIGGER IF EXISTS message_search_insert",
    "DROP TABLE IF EXISTS core_message_search",
]


def _run(schema_editor, statements: dict[str, list[str]]) -> None:
    for statement in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement, params=None)


def forward(apps, schema_editor):
    _run(schema_editor, {"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD})


def backward(apps, schema_editor):
    _run(schema_editor, {"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD})


class Migration(migrations.Migration):
    dependencies = [("core", "0015_working_the_pool")]

    operations = [
        migrations.AddIndex(
            model_name="message",
            index=models.Index(models.F("sent_at").desc(), models.F("id").desc(), name="message_recent"),
        ),
        migrations.RunPython(forward, backward),
    ]
