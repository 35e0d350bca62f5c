"""schema.graphql is generated from the code; this fails when someone forgets to regenerate it."""

from pathlib import Path

from strawberry.printer import print_schema

from graph.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_the_code():
    live = print_schema(schema)
    committed = SCHEMA_FILE.read_text()
    assert committed.strip() == live.strip(), (
        "schema.graphql is out of date; regenerate it with `make schema` "
        "(python manage.py export_schema graph.schema:schema --path schema.graphql) and commit it."
    )
