"""PostgreSQL: one row per (patient, name word), kept by triggers, so a name-token search reads few index entries.

`core_patient_search_token` holds each distinct word of a patient's `search_name` with the patient's sort key
(last name, first name, id) and `search_name` itself. Its index `(practice_id, token, last_name, first_name,
patient_id) INCLUDE (search_name)` lists, per practice and word, the patients already in result order, and lets
the other tokens of a query be checked on the index entry: core/search.py walks the words a prefix matches and
stops each walk after the page it needs, instead of collecting every patient whose name matches a short prefix
and sorting them (a 2-letter prefix matches tens of thousands of patients in a practice of a million).

Statement-level triggers keep it in step with every write to core_patient (ORM saves, bulk_create, bulk_update,
raw SQL, COPY, TRUNCATE), so no writer has to remember it. `token` uses the "C" collation, so prefix LIKE and
ranges use the btree under any database collation.

SQLite (the embedded demo) has no such table: core/search.py keeps its LIKE query there.
"""

from django.db import migrations, transaction

TABLE = "core_patient_search_token"

CREATE = [
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        patient_id bigint NOT NULL,
        practice_id bigint NOT NULL,
        token text COLLATE "C" NOT NULL,
        last_name varchar(100) NOT NULL,
        first_name varchar(100) NOT NULL,
        search_name varchar(201) NOT NULL
    )
    """,
    # The distinct non-empty words of each new row's search_name, with its sort key.
    """
    CREATE OR REPLACE FUNCTION core_patient_search_token_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO core_patient_search_token (patient_id, practice_id, token, last_name, first_name, search_name)
        SELECT p.id, p.practice_id, w.token, p.last_name, p.first_name, p.search_name
        FROM new_rows p
        CROSS JOIN LATERAL (
            SELECT DISTINCT t FROM unnest(string_to_array(p.search_name, ' ')) AS t WHERE t <> ''
        ) AS w(token);
        RETURN NULL;
    END $$
    """,
    # Only rows whose search key changed are rewritten (a pronoun or date of birth edit touches nothing).
    """
    CREATE OR REPLACE FUNCTION core_patient_search_token_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        WITH changed AS (
            SELECT n.* FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.practice_id, n.search_name, n.last_name, n.first_name)
                  IS DISTINCT FROM (o.practice_id, o.search_name, o.last_name, o.first_name)
        ), stale AS (
            DELETE FROM core_patient_search_token s USING changed c WHERE s.patient_id = c.id
        )
        INSERT INTO core_patient_search_token (patient_id, practice_id, token, last_name, first_name, search_name)
        SELECT p.id, p.practice_id, w.token, p.last_name, p.first_name, p.search_name
        FROM changed p
        CROSS JOIN LATERAL (
            SELECT DISTINCT t FROM unnest(string_to_array(p.search_name, ' ')) AS t WHERE t <> ''
        ) AS w(token);
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION core_patient_search_token_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM core_patient_search_token s USING old_rows o WHERE s.patient_id = o.id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION core_patient_search_token_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE core_patient_search_token;
        RETURN NULL;
    END $$
    """,
    "DROP TRIGGER IF EXISTS patient_search_token_add ON core_patient",
    "CREATE TRIGGER patient_search_token_add AFTER INSERT ON core_patient REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_token_add()",
    "DROP TRIGGER IF EXISTS patient_search_token_change ON core_patient",
    "CREATE TRIGGER patient_search_token_change AFTER UPDATE ON core_patient "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_token_change()",
    "DROP TRIGGER IF EXISTS patient_search_token_remove ON core_patient",
    "CREATE TRIGGER patient_search_token_remove AFTER DELETE ON core_patient REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_token_remove()",
    "DROP TRIGGER IF EXISTS patient_search_token_truncate ON core_patient",
    "CREATE TRIGGER patient_search_token_truncate AFTER TRUNCATE ON core_patient "
    "FOR EACH STATEMENT EXECUTE FUNCTION core_patient_search_token_truncate()",
    # Existing patients, then the indexes (faster built once than maintained row by row).
    f"TRUNCATE {TABLE}",
    f"""
    INSERT INTO {TABLE} (patient_id, practice_id, token, last_name, first_name, search_name)
    SELECT p.id, p.practice_id, w.token, p.last_name, p.first_name, p.search_name
    FROM core_patient p
    CROSS JOIN LATERAL (
        SELECT DISTINCT t FROM unnest(string_to_array(p.search_name, ' ')) AS t WHERE t <> ''
    ) AS w(token)
    """,
    f"CREATE INDEX IF NOT EXISTS patient_search_token_order ON {TABLE} "
    "(practice_id, token, last_name, first_name, patient_id) INCLUDE (search_name)",
    f"CREATE INDEX IF NOT EXISTS patient_search_token_patient ON {TABLE} (patient_id)",
]

DROP = [
    "DROP TRIGGER IF EXISTS patient_search_token_truncate ON core_patient",
    "DROP TRIGGER IF EXISTS patient_search_token_remove ON core_patient",
    "DROP TRIGGER IF EXISTS patient_search_token_change ON core_patient",
    "DROP TRIGGER IF EXISTS patient_search_token_add ON core_patient",
    "DROP FUNCTION IF EXISTS core_patient_search_token_truncate()",
    "DROP FUNCTION IF EXISTS core_patient_search_token_remove()",
    "DROP FUNCTION IF EXISTS core_patient_search_token_change()",
    "DROP FUNCTION IF EXISTS core_patient_search_token_add()",
    f"DROP TABLE IF EXISTS {TABLE}",
]


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(using=connection.alias):
        for statement in CREATE:
            schema_editor.execute(statement, params=None)
    # Outside the transaction: a filled visibility map makes the search's index-only scans index-only at once
    # (autovacuum keeps it so afterwards).
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
        ("core", "0006_counters_database_defaults"),
    ]

    operations = [migrations.RunPython(forward, backward)]
