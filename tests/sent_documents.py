"""The GraphQL documents the test suite and the Workbench send, for the differential tests (plan against
graphql-core): string literals of `tests/` and template literals of `web/static/web/js`, kept when they parse as
one operation of the kind asked for that the schema validates."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import graphql

from graph.schema import schema

ROOT = Path(__file__).resolve().parents[1]
WEB_SCRIPTS = ROOT / "web" / "static" / "web" / "js"

_TEMPLATE = re.compile(r"`((?:[^`\\]|\\.)*)`", re.S)
_CONSTANT = re.compile(r"const\s+([A-Z_]+)\s*=\s*`((?:[^`\\]|\\.)*)`", re.S)


def js_templates(source: str) -> list[str]:
    """Template literals, with `${NAME}` replaced by the file's `const NAME = `…`` fragments of fields."""
    constants = {name: body for name, body in _CONSTANT.findall(source)}
    for _ in range(3):  # fragments made of fragments
        constants = {name: _substitute(body, constants) for name, body in constants.items()}
    return [_substitute(body, constants) for body in _TEMPLATE.findall(source) if "{" in body]


def _substitute(text: str, constants: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: constants.get(m.group(1), m.group(0)), text)


def web_templates() -> set[str]:
    return {text for path in sorted(WEB_SCRIPTS.glob("*.js")) for text in js_templates(path.read_text())}


def valid_operations(texts: Iterable[str], operation: graphql.OperationType) -> list[str]:
    """The texts that are one operation of this kind and valid for the schema, in a stable order."""
    documents = []
    for text in sorted(set(texts)):
        try:
            document = graphql.parse(text)
        except graphql.GraphQLError:
            continue
        operations = [d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode)]
        if len(operations) != 1 or operations[0].operation != operation:
            continue
        if not graphql.validate(schema._schema, document):
            documents.append(text)
    return documents
