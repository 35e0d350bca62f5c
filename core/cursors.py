"""The one cursor encoding of the API: URL-safe base64 of a position's text (a list page's ordering values as
JSON, an event log id). Decoding errors (`ValueError`, of which `binascii.Error` is one) are the caller's to
turn into its VALIDATION_ERROR."""

from __future__ import annotations

import base64

import orjson


def encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def encode_values(values: list) -> str:
    """A list page's position: its ordering values (numbers, ASCII text) as compact JSON, the text
    `json.dumps(values, separators=(",", ":"))` gives, encoded by orjson (a page encodes hundreds)."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode()


def decode(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor.encode())
