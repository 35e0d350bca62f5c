"""`Mailbox.stats`: how a mailbox's team is doing, computed in SQL for a whole page of mailboxes at once.

Two queries whatever the number of conversations or mailboxes: one aggregate over the conversations (served by
the `conversation_mailbox_waiting` index), one pair of medians over `StaffResponse` rows since a date (index
`response_by_mailbox_time`). The median is the middle row (or the mean of the two middle rows) by ROW_NUMBER
over each mailbox's responses: the same SQL on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Min, Q

from core.instants import require_instant
from core.models import Conversation, ConversationStatus, StaffResponse


@dataclass
class MailboxStats:
    open_count: int = 0
    waiting_count: int = 0
    oldest_waiting_since: dt.datetime | None = None
    median_first_response_seconds: float | None = None
    median_response_seconds: float | None = None


_MEDIANS = """
WITH responses AS (
    SELECT mailbox_id, seconds, is_first FROM {table} WHERE mailbox_id IN ({ids}) {since}
), kinds AS (
    SELECT mailbox_id, 'all' AS kind, seconds FROM responses
    UNION ALL
    SELECT mailbox_id, 'first' AS kind, seconds FROM responses WHERE is_first
), ranked AS (
    SELECT mailbox_id, kind, seconds,
           ROW_NUMBER() OVER (PARTITION BY mailbox_id, kind ORDER BY seconds) AS position,
           COUNT(*) OVER (PARTITION BY mailbox_id, kind) AS total
    FROM kinds
)
SELECT mailbox_id, kind, AVG(seconds) FROM ranked
WHERE position IN ((total + 1) / 2, (total + 2) / 2)
GROUP BY mailbox_id, kind
"""


def stats_of(mailbox_ids: Iterable[int], *, since: dt.datetime | None) -> dict[int, MailboxStats]:
    require_instant(since, "since")
    ids = sorted(set(mailbox_ids))
    result = {pk: MailboxStats() for pk in ids}
    if not ids:
        return result
    rows = (
        Conversation.objects.filter(mailbox_id__in=ids, status=ConversationStatus.ACTIVE)
        .order_by()
        .values("mailbox_id")
        .annotate(
            open=Count("id"),
            waiting=Count("id", filter=Q(waiting_since__isnull=False)),
            oldest=Min("waiting_since"),
        )
    )
    for row in rows:
        stats = result[row["mailbox_id"]]
        stats.open_count, stats.waiting_count, stats.oldest_waiting_since = row["open"], row["waiting"], row["oldest"]
    sql = _MEDIANS.format(
        table=connection.ops.quote_name(StaffResponse._meta.db_table),
        ids=", ".join(["%s"] * len(ids)),
        since="AND answered_at >= %s" if since is not None else "",
    )
    with connection.cursor() as cursor:
        params = [connection.ops.adapt_datetimefield_value(since)] if since is not None else []
        cursor.execute(sql, [*ids, *params])
        for mailbox_id, kind, median in cursor.fetchall():
            if kind == "all":
                result[mailbox_id].median_response_seconds = float(median)
            else:
                result[mailbox_id].median_first_response_seconds = float(median)
    return result
