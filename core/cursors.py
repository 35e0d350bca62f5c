"""The one cursor encoding of the API: URL-safe base64 of a position's text (a list page's ordering values as
JSON, an event log id). Decoding errors (`ValueError`, of which `binascii.Error` is one) are the caller's to
turn into its VALIDATION_ERROR."""

from __future__ import annotations

import base64


def encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor.encode())
