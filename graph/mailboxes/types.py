"""Mailboxes: the viewer's facts on each (subscription, counts), their conversations, stats and subscribers."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import strawberry
import strawberry_django
from django.db.models import Count, Q, QuerySet
from strawberry import relay

from core import models, sql
from core.errors import DomainError, ErrorCode
from core.prepared import Prepared, Variants
from core.reads import audit_mailbox_conversation_reads
from core.stats import MailboxStats, stats_of
from core.viewer_facts import annotate_conversations, annotate_mailboxes
from graph import guards
from graph.batching import batch_of, passes, with_siblings
from graph.context import Info
from graph.conversations.orderings import CONVERSATION_ORDERS
from graph.conversations.types import ConversationType
from graph.enums import ConversationOrder, ConversationPriority, ConversationStatus, MailboxStatus
from graph.ids import decode_id
from graph.pagination import Connection, PageArgs, first_page_of_one, paginate, paginate_first_of_one, paginate_siblings
from graph.practice.types import PracticeType, UserType
from graph.selection import child_names

# The Mailbox fields answered from `core.viewer_facts.annotate_mailboxes`'s facts, by the fact each reads.
# The subscribers of a page's mailboxes (`mailboxes`: their ids), built and compiled once (core.prepared).
_SUBSCRIBERS = Prepared(
    lambda prepared: (
        models.MailboxSubscription.objects.filter(
            sql.condition(f"{sql.column(models.MailboxSubscription, 'mailbox')} IN ({prepared.text('mailboxes')})")
        )
        .select_related("user")
        .order_by("user__full_name", "user__username", "user_id")
    )
)


def _first_page(prepared: Prepared, key: tuple) -> QuerySet:
    """One mailbox's first page of conversations: the statement of `MailboxType.conversations` for a shape
    (filters, totals, page size and direction), with the mailbox, the viewer and the assignee as values."""
    status, has_assignee, unassigned, priority, waiting, order, with_totals, size, backwards = key
    where = conversation_filter(
        status=status,
        assignee=prepared.value("assignee") if has_assignee else None,
        unassigned=unassigned,
        priority=priority,
        waiting_only=waiting,
    ) & Q(mailbox_id=prepared.value("mailbox"))
    rows = annotate_conversations(
        models.Conversation.objects.filter(where), models.User(pk=prepared.value("user")), mailbox=False
    )
    totals = models.Conversation.objects.filter(where) if with_totals else None
    return first_page_of_one(rows, CONVERSATION_ORDERS[order], size=size, backwards=backwards, totals_of=totals)


_FIRST_PAGES = Variants(_first_page)

MAILBOX_FACT_FIELDS = {
    "isSubscribed": "is_subscribed",
    "subscriberCount": "subscriber_count",
    "unreadCount": "unread_count",
}


# Fields whose guard decides on the viewer's subscription: the read annotates it for them too (no query of its own).
SUBSCRIPTION_GUARDED = frozenset({"conversations", "stats"})


def selected_mailbox_facts(info: Info) -> frozenset[str]:
    """The facts a read of mailboxes must annotate for the fields selected on them."""
    names = child_names(info)
    facts = {MAILBOX_FACT_FIELDS[name] for name in names & MAILBOX_FACT_FIELDS.keys()}
    if names & SUBSCRIPTION_GUARDED:
        facts.add("is_subscribed")
    return frozenset(facts)


def _mailbox_facts(mailbox: models.Mailbox, info: Info, fact: str) -> models.Mailbox:
    """The mailbox with the viewer's annotations (subscription, counts): as read if it carries `fact`, else all
    of them loaded for its whole list at once."""
    if hasattr(mailbox, fact):
        return mailbox
    batch = batch_of(info.context, mailbox)

    def load() -> dict[int, models.Mailbox]:
        ids = {m.pk for m in batch.rows}
        return {m.pk: m for m in annotate_mailboxes(models.Mailbox.objects.filter(pk__in=ids), info.context.user)}

    return info.context.memo(("mailbox-facts", batch), load)[mailbox.pk]


@strawberry_django.type(models.Mailbox, name="Mailbox")
class MailboxType(relay.Node):
    pk: relay.NodeID[int]
    name: str

    @strawberry.field
    def status(self: models.Mailbox) -> MailboxStatus:
        return MailboxStatus.ACTIVE if self.is_active else MailboxStatus.DEACTIVATED

    @strawberry.field
    def practice(self: models.Mailbox, info: Info) -> PracticeType:
        return info.context.memo(
            ("practice", self.practice_id), lambda: models.Practice.objects.get(pk=self.practice_id)
        )

    @strawberry.field(description="Whether the viewer is subscribed (false for patients).")
    def is_subscribed(self: models.Mailbox, info: Info) -> bool:
        return bool(getattr(_mailbox_facts(self, info, "is_subscribed"), "is_subscribed", False))

    @strawberry.field(description="Staff of the practice only (null with an error for others).")
    def subscriber_count(self: models.Mailbox, info: Info) -> int | None:
        guards.workbench_staff_of(info.context, self.practice_id)
        return int(getattr(_mailbox_facts(self, info, "subscriber_count"), "subscriber_count", 0))

    @strawberry.field(
        description="The text a patient gets back when their message opens a conversation here or reactivates an "
        "archived one (null: none). Staff of the practice only (null with an error for others)."
    )
    def auto_reply(self: models.Mailbox, info: Info) -> str | None:
        guards.workbench_staff_of(info.context, self.practice_id)
        return self.auto_reply

    @strawberry.field(description="Messages from patients in this mailbox that the viewer has not read.")
    def unread_count(self: models.Mailbox, info: Info) -> int:
        return int(getattr(_mailbox_facts(self, info, "unread_count"), "unread_count", 0))

    @strawberry.field(description="Staff of the practice only (null with an error for others).")
    def subscribers(self: models.Mailbox, info: Info) -> list[UserType] | None:
        guards.workbench_staff_of(info.context, self.practice_id)
        batch = batch_of(info.context, self)

        def load() -> dict[int, list[models.User]]:
            allowed = [
                m.pk for m in batch.rows if passes(lambda m: guards.workbench_staff_of(info.context, m.practice_id), m)
            ]
            by_mailbox: dict[int, list[models.User]] = defaultdict(list)
            for sub in _SUBSCRIBERS.rows(texts={"mailboxes": sql.integers(allowed) or "NULL"}):
                by_mailbox[sub.mailbox_id].append(sub.user)
            with_siblings(
                info.context, [user for users in by_mailbox.values() for user in users]
            )  # one batch for memberships
            return by_mailbox

        return info.context.memo(("subscribers", batch), load).get(self.pk, [])

    @strawberry.field(
        description="Conversations of this mailbox, most recent activity first (or `order`). "
        "Subscribers of an active mailbox only (else NOT_SUBSCRIBED / MAILBOX_DEACTIVATED). Filters: "
        "`assigneeId` (assigned to that user), `unassigned`, `priority`, `waitingOnly` (a patient awaits an answer)."
    )
    def conversations(
        self: models.Mailbox,
        info: Info,
        status: ConversationStatus | None = models.ConversationStatus.ACTIVE,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        assignee_id: strawberry.ID | None = None,
        unassigned: bool | None = None,
        priority: ConversationPriority | None = None,
        waiting_only: bool | None = None,
        order: ConversationOrder = ConversationOrder.RECENT_ACTIVITY,
    ) -> Connection[ConversationType] | None:
        context = info.context
        guards.mailbox_view(context, self)
        user = context.require_user()
        args = PageArgs(first=first, after=after, last=last, before=before)
        # `status: null` lists active and archived conversations together.
        waiting = bool(waiting_only or order == ConversationOrder.LONGEST_WAITING)
        assignee = decode_id(assignee_id, "User") if assignee_id is not None else None
        where = conversation_filter(
            status=status, assignee=assignee, unassigned=unassigned, priority=priority, waiting_only=waiting
        )
        ordering = CONVERSATION_ORDERS[order]
        # Each row's mailbox is set to its parent below (which carries the viewer's annotations): not joined.
        base = annotate_conversations(models.Conversation.objects.filter(where), user, mailbox=False)
        batch = batch_of(info.context, self)

        def load() -> dict[int, Connection]:
            parents = {m.pk: m for m in batch.rows if passes(lambda m: guards.mailbox_view(context, m), m)}
            with_totals = "totalCount" in child_names(info)
            if args.is_first_page and len(parents) == 1 and args.size():  # the Workbench's list
                [only] = parents
                shape = (status, assignee_id is not None, unassigned, priority, waiting, order, with_totals)
                connections = paginate_first_of_one(
                    _FIRST_PAGES[(*shape, args.size(), args.backwards)],
                    {"mailbox": only, "user": user.pk, "assignee": assignee},
                    only,
                    args,
                    ordering,
                    with_totals=with_totals,
                    counts=lambda: {},  # the rows carry the total when it is selected
                )
            elif args.is_first_page:
                ids = list(parents)
                connections = paginate_siblings(
                    base,
                    args,
                    ordering,
                    parent_field="mailbox_id",
                    parent_ids=ids,
                    totals_of=models.Conversation.objects.filter(where) if with_totals else None,
                    counts=lambda: dict(
                        models.Conversation.objects.filter(where, mailbox_id__in=ids)
                        .order_by()
                        .values_list("mailbox_id")
                        .annotate(n=Count("*"))
                        .values_list("mailbox_id", "n")
                    ),
                )
            else:  # a cursor belongs to one mailbox's list
                connections = {self.pk: paginate(base.filter(mailbox=self), args, ordering)}
            nodes = []
            for pk, connection in connections.items():
                for edge in connection.edges:
                    edge.node.mailbox = parents[pk]  # already carries the viewer's annotations
                    nodes.append(edge.node)
            with_siblings(info.context, nodes)
            audit_mailbox_conversation_reads(
                user=user, rows={parents[pk]: [e.node for e in c.edges] for pk, c in connections.items()}
            )
            return connections

        filters = (status, assignee_id, unassigned, priority, waiting_only, order)
        key = ("mailbox-conversations", batch if args.is_first_page else self.pk, filters, args)
        return context.memo(key, load)[self.pk]

    @strawberry.field(
        description="How the mailbox's team is doing: open and waiting conversations now, the oldest wait, and the "
        "median first response and response times of staff answers since `since` (all time when null). "
        "Subscribers and mailbox admins (else NOT_SUBSCRIBED)."
    )
    def stats(self: models.Mailbox, info: Info, since: dt.datetime | None = None) -> MailboxStatsType | None:
        context = info.context
        guards.pool_view(context, self)
        batch = batch_of(info.context, self)

        def load() -> dict[int, MailboxStats]:
            allowed = [m.pk for m in batch.rows if passes(lambda m: guards.pool_view(context, m), m)]
            return stats_of(allowed, since=since)

        stats = context.memo(("mailbox-stats", batch, since), load)[self.pk]
        return MailboxStatsType(
            open_count=stats.open_count,
            waiting_count=stats.waiting_count,
            oldest_waiting_since=stats.oldest_waiting_since,
            median_first_response_seconds=stats.median_first_response_seconds,
            median_response_seconds=stats.median_response_seconds,
        )


@strawberry.type(name="MailboxStats")
class MailboxStatsType:
    open_count: int
    waiting_count: int
    oldest_waiting_since: dt.datetime | None
    median_first_response_seconds: float | None
    median_response_seconds: float | None


def conversation_filter(
    *,
    status: Any,
    assignee: int | None,
    unassigned: bool | None,
    priority: Any,
    waiting_only: bool | None,
) -> Q:
    if assignee is not None and unassigned:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Pass assigneeId or unassigned: true, not both.")
    where = Q()
    if status is not None:
        where &= Q(status=status)
    if assignee is not None:
        where &= Q(assignee_id=assignee)
    elif unassigned is not None:
        where &= Q(assignee__isnull=unassigned)
    if priority is not None:
        where &= Q(priority=priority)
    if waiting_only:
        where &= Q(waiting_since__isnull=False)
    return where


@strawberry.type
class MailboxAccessEntry:
    mailbox: MailboxType
    subscribed: bool


@strawberry.type
class PracticeMailboxAccess:
    practice: PracticeType
    all_mailboxes: bool
    mailboxes: list[MailboxAccessEntry]
