"""Times a caller sends (filters such as `auditEvents(since:, until:)`, `Mailbox.stats(since:)`): an instant, so
with its offset. A time without one names no instant (the server's zone? the reader's?): read in some assumed zone
it silently moves an audit window by hours, so it is refused, saying what to send, as any bad input is."""

from __future__ import annotations

import datetime as dt

from core.errors import DomainError, ErrorCode


def require_instant(value: dt.datetime | None, field: str) -> dt.datetime | None:
    """`value` unchanged when it has an offset (or is None); VALIDATION_ERROR naming `field` otherwise."""
    if value is not None and value.utcoffset() is None:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"{field} needs a time zone offset, e.g. {value.replace(microsecond=0).isoformat()}Z for UTC.",
            field=field,
        )
    return value
