"""PostgreSQL indexes for patient search (core/search.py).

- A trigram GIN index on search_name serves the "a later word starts with" half of a name token
  (LIKE '% token%'), which no btree can.
- text_pattern_ops btrees serve the prefix halves (LIKE 'token%') under any database collation; the plain
  btrees of the model only do so under the "C" collation.

SQLite (the embedded demo) keeps the model's plain indexes.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS patient_search_name_trgm ON core_patient USING gin (search_name gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS patient_search_name_prefix "
    "ON core_patient (practice_id, search_name text_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS patient_search_account_prefix "
    "ON core_patient (practice_id, search_account text_pattern_ops)",
]

BACKWARD = [
    "DROP INDEX IF EXISTS patient_search_account_prefix",
    "DROP INDEX IF EXISTS patient_search_name_prefix",
    "DROP INDEX IF EXISTS patient_search_name_trgm",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_auditevent_append_only"),
    ]

    operations = [migrations.RunPython(forward, backward)]
