"""The orders of conversation and message lists, with what their cursors hold."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.dateparse import parse_datetime

from core import models
from graph.enums import ConversationOrder
from graph.pagination import Ordering, cursor_int, invalid_cursor

MESSAGE_ORDER = Ordering(
    fields=("sequence",), descending=False, to_json=lambda m: [m.sequence], from_json=lambda v: [cursor_int(v[0])]
)


def cursor_time(value: Any) -> dt.datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise invalid_cursor()
    return parsed


CONVERSATION_ORDER = Ordering(
    fields=("last_activity_at", "id"),
    descending=True,
    to_json=lambda c: [c.last_activity_at.isoformat(), c.pk],
    from_json=lambda v: [cursor_time(v[0]), cursor_int(v[1])],
)


def _priority(value: Any) -> str:
    if value not in models.ConversationPriority.values:
        raise invalid_cursor()
    return value


# "URGENT" > "NORMAL" as text: descending puts urgent conversations first, then most recent activity.
URGENT_FIRST_ORDER = Ordering(
    fields=("priority", "last_activity_at", "id"),
    descending=True,
    to_json=lambda c: [c.priority, c.last_activity_at.isoformat(), c.pk],
    from_json=lambda v: [_priority(v[0]), cursor_time(v[1]), cursor_int(v[2])],
)
# Waiting conversations only (the order implies `waitingOnly`), the patient who has waited longest first.
LONGEST_WAITING_ORDER = Ordering(
    fields=("waiting_since", "id"),
    descending=False,
    to_json=lambda c: [c.waiting_since.isoformat(), c.pk],
    from_json=lambda v: [cursor_time(v[0]), cursor_int(v[1])],
)
CONVERSATION_ORDERS = {
    ConversationOrder.RECENT_ACTIVITY: CONVERSATION_ORDER,
    ConversationOrder.URGENT_FIRST: URGENT_FIRST_ORDER,
    ConversationOrder.LONGEST_WAITING: LONGEST_WAITING_ORDER,
}
# The patient's numbering of their messages (notes have none): the portal's `sequence`, gap-free.
PORTAL_MESSAGE_ORDER = Ordering(
    fields=("portal_sequence",),
    descending=False,
    to_json=lambda m: [m.portal_sequence],
    from_json=lambda v: [cursor_int(v[0])],
)
