"""PostgreSQL: one row per (patient, name word, other name word), so a two-word search seeks both words.

Results are sorted by last name, first name. Walking one word's patients in that order (migration 0007) and
checking a second token on each entry passes every patient sorted before the match: for "ma wi", each "ma…"
word's walk read ~8,000 entries (last names A to Wh) before the first "Wi…". Here each patient is listed under
every ordered pair of distinct words of its `search_name`, indexed `(practice_id, word, other, last_name,
first_name, patient_id) INCLUDE (search_name)`: for each word the first token is a prefix of, the second token is
a range of `other`, read directly, and only those few patients are sorted (core/search.py).

Statement-level triggers on core_patient keep it in step with every write, as they keep the token table.
SQLite (the embedded demo) has no such table.
"""

from django.db import migrations, transaction

TABLE = "core_patient_search_pair"

# The ordered pairs of distinct non-empty words of each patient's search_name, with its sort key.
_PAIRS_OF = """
    SELECT p.id, p.practice_id, a.word, b.word, p.last_name, p.first_name, p.search_name
    FROM {rows} p
    CROSS JOIN LATERAL (
        SELECT DISTINCT t FROM unnest(string_to_array(p.search_name, ' ')) AS t WHERE t <> ''
    ) AS a(word)
    CROSS JOIN LATERAL (
        SELECT DISTINCT t FROM unnest(string_to_array(p.search_name, ' ')) AS t WHERE t <> '' AND t <> a.word
    ) AS b(word)
"""
_COLUMNS = "(patient_id, practice_id, word, other, last_name, first_name, search_name)"

CREATE = [
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        patient_id bigint NOT NULL,
        practice_id bigint NOT NULL,
        word text COLLATE "C" NOT NULL,
        other text COLLATE "C" NOT NULL,
        last_name varchar(100) NOT NULL,
        first_name varchar(100) NOT NULL,
        search_name varchar(201) NOT NULL
    )
    """,
    f"""
    CREATE OR REPLACE FUNCTION core_patient_search_pair_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {TABLE} {_COLUMNS} {_PAIRS_OF.format(rows="new_rows")};
        RETURN NULL;
    END $$
    """,
    # Only rows whose search key changed are rewritten (a pronoun or date of birth edit touches nothing).
    f"""
    CREATE OR REPLACE FUNCTION core_patient_search_pair_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        WITH changed AS (
            SELECT n.* FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.practice_id, n.search_name, n.last_name, n.first_name)
                  IS DISTINCT FROM (o.practice_id, o.search_name, o.last_name, o.first_name)
        ), stale AS (
            DELETE FROM {TABLE} s USING changed c WHERE s.patient_id = c.id
        )
        INSERT INTO {TABLE} {_COLUMNS} {_PAIRS_OF.format(rows="changed")};
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION core_patient_search_pair_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {TABLE} s USING old_rows o WHERE s.patient_id = o.id;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION core_patient_search_pair_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE {TABLE};
        RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS patient_search_pair_add ON core_patient",
    "CREATE TRIGGER patient_search_pair_add AFTER INSERT ON core_patient REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_pair_add()",
    "DROP TRIGGER IF EXISTS patient_search_pair_change ON core_patient",
    "CREATE TRIGGER patient_search_pair_change AFTER UPDATE ON core_patient "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_pair_change()",
    "DROP TRIGGER IF EXISTS patient_search_pair_remove ON core_patient",
    "CREATE TRIGGER patient_search_pair_remove AFTER DELETE ON core_patient REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_pair_remove()",
    "DROP TRIGGER IF EXISTS patient_search_pair_truncate ON core_patient",
    "CREATE TRIGGER patient_search_pair_truncate AFTER TRUNCATE ON core_patient "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_pair_truncate()",
    # Existing patients, then the indexes (faster built once than maintained row by row).
    f"TRUNCATE {TABLE}",
    f"INSERT INTO {TABLE} {_COLUMNS} {_PAIRS_OF.format(rows='core_patient')}",
    f"CREATE INDEX IF NOT EXISTS patient_search_pair_order ON {TABLE} "
    "(practice_id, word, other, last_name, first_name, patient_id) INCLUDE (search_name)",
    f"CREATE INDEX IF NOT EXISTS patient_search_pair_patient ON {TABLE} (patient_id)",
]

DROP = [
    "DROP TRIGGER IF EXISTS patient_search_pair_truncate ON core_patient",
    "DROP TRIGGER IF EXISTS patient_search_pair_remove ON core_patient",
    "DROP TRIGGER IF EXISTS patient_search_pair_change ON core_patient",
    "DROP TRIGGER IF EXISTS patient_search_pair_add ON core_patient",
    "DROP FUNCTION IF EXISTS core_patient_search_pair_truncate()",
    "DROP FUNCTION IF EXISTS core_patient_search_pair_remove()",
    "DROP FUNCTION IF EXISTS core_patient_search_pair_change()",
    "DROP FUNCTION IF EXISTS core_patient_search_pair_add()",
    f"DROP TABLE IF EXISTS {TABLE}",
]


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(using=connection.alias):
        for statement in CREATE:
            schema_editor.execute(statement, params=None)
    # Outside the transaction: a filled visibility map makes the search's index-only scans index-only at once.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    # Not atomic only so that forward() can VACUUM after its own transaction commits.
    atomic = False

    dependencies = [
        ("core", "0007_patient_search_tokens"),
    ]

    operations = [migrations.RunPython(forward, backward)]
