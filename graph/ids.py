"""Relay global IDs: encode from (type name, pk); decode strictly — anything malformed is NOT_FOUND."""

from __future__ import annotations

from strawberry import relay

from core.errors import not_found


def decode_id(value: str | relay.GlobalID, type_name: str, what: str | None = None) -> int:
    try:
        gid = value if isinstance(value, relay.GlobalID) else relay.GlobalID.from_id(value)
        if gid.type_name != type_name:
            raise ValueError(type_name)
        pk = int(gid.node_id)
        if pk <= 0:
            raise ValueError(pk)
        return pk
    except Exception:
        raise not_found(what or type_name.lower())


def decode_ids(values: list[str], type_name: str, what: str | None = None) -> list[int]:
    return [decode_id(value, type_name, what) for value in values]


def encode_id(type_name: str, pk: int) -> str:
    return str(relay.GlobalID(type_name, str(pk)))
