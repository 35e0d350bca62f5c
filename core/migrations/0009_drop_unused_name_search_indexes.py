"""PostgreSQL: drop the name-search indexes of migration 0003 that no query uses since 0007/0008.

Name tokens are now looked up in the token and pair tables (core/search.py); the trigram GIN index and the
`text_pattern_ops` btree on `core_patient.search_name` only cost time on every patient write (a GIN index is the
slowest to maintain, and a directory import writes patients in bulk). The account-number prefix index stays.
`backward` builds them again.
"""

from django.db import migrations

FORWARD = [
    "DROP INDEX IF EXISTS patient_search_name_trgm",
    "DROP INDEX IF EXISTS patient_search_name_prefix",
]

BACKWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS patient_search_name_trgm ON core_patient USING gin (search_name gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS patient_search_name_prefix "
    "ON core_patient (practice_id, search_name text_pattern_ops)",
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
        ("core", "0008_patient_search_pairs"),
    ]

    operations = [migrations.RunPython(forward, backward)]
