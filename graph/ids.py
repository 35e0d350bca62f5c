"""Relay global IDs: encode from (type name, pk); decode strictly — anything malformed is NOT_FOUND."""

from __future__ import annotations

from strawberry import relay

from core.errors import not_found


def decode_id(value: str | relay.GlobalID, type_name: str, what: str | None = None) -> int:
    """Only the canonical form, exactly as `encode_id` writes it, names a record: base64 decoding skips
    characters outside its alphabet and `int()` takes spaces, signs, underscores and any script's digits, so
    without the round trip one record answered to countless spellings of its id (cache keys, audit rows and
    rate limits keyed on the id would all see different ids for it)."""
    raw = str(value)
    try:
        gid = relay.GlobalID.from_id(raw)
        if gid.type_name != type_name:
            raise ValueError(type_name)
        pk = int(gid.node_id)
        if pk <= 0 or encode_id(type_name, pk) != raw:
            raise ValueError(raw)
        return pk
    except Exception:
        raise not_found(what or type_name.lower())


def decode_ids(values: list[str], type_name: str, what: str | None = None) -> list[int]:
    return [decode_id(value, type_name, what) for value in values]


def encode_id(type_name: str, pk: int) -> str:
    return str(relay.GlobalID(type_name, str(pk)))
