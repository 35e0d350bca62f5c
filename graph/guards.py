"""Field-level guards: the `permissions/` decisions, asked once per request per practice or mailbox.

A field that exposes protected data calls one of these wherever it is reached (root query, nested under
another type, or through the portal), so no path skips a check. The facts the decisions need are loaded
once per request (membership and switches per practice, the viewer's subscriptions in one query unless the
row's own read annotated them), which
keeps a page of N rows at a constant number of SQL queries. Refusals are remembered too: every row of a
page gets the same answer without asking again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import models
from core.errors import DomainError
from core.viewer_facts import subscription_on_row
from graph.context import Context
from permissions import (
    is_mailbox_admin_of,
    require_conversation_access,
    require_mailbox_view,
    require_member,
    require_own_conversation,
    require_pool_view,
    require_portal,
    require_workbench_member,
)


def _decide(context: Context, key: tuple, decide: Callable[[], Any]) -> Any:
    """Memoizes a decision, including a refusal (re-raised for every row that asks)."""
    key = ("guard", *key)
    if key not in context.cache:
        try:
            context.cache[key] = (True, decide())
        except DomainError as refusal:
            context.cache[key] = (False, refusal)
    allowed, value = context.cache[key]
    if not allowed:
        raise value
    return value


def note_workbench_staff(context: Context, practice_id: int) -> None:
    """A root read (`core.reads`) has just decided this; its fields need not ask the database again."""
    context.cache.setdefault(("guard", "workbench", practice_id), (True, None))


def note_mailbox_view(context: Context, mailbox_id: int) -> None:
    context.cache.setdefault(("guard", "mailbox-view", mailbox_id), (True, None))


def staff_of(context: Context, practice_id: int) -> models.Membership:
    """A staff member of this practice (patients: FORBIDDEN; other practices: NOT_FOUND)."""
    user = context.require_user()
    return _decide(context, ("member", practice_id), lambda: require_member(user, practice_id))


def workbench_staff_of(context: Context, practice_id: int) -> models.Membership:
    """A staff member of this practice with the mailbox workbench switched on."""
    user = context.require_user()
    return _decide(context, ("workbench", practice_id), lambda: require_workbench_member(user, practice_id))


def subscribed_mailbox_ids(context: Context) -> frozenset[int]:
    user = context.require_user()
    return _decide(
        context,
        ("subscriptions",),
        lambda: frozenset(models.MailboxSubscription.objects.filter(user=user).values_list("mailbox_id", flat=True)),
    )


def _subscribed(context: Context, mailbox: models.Mailbox) -> bool:
    """The viewer's subscription to this mailbox: from the row when its read annotated it for this viewer (the root
    `mailbox` read does, with the mailbox), else from all the viewer's subscriptions, loaded once."""
    on_row = subscription_on_row(mailbox, context.require_user())
    return on_row if on_row is not None else mailbox.pk in subscribed_mailbox_ids(context)


def mailbox_view(context: Context, mailbox: models.Mailbox) -> None:
    """The mailbox view of this mailbox: workbench staff of its practice, subscribed, mailbox active."""
    workbench_staff_of(context, mailbox.practice_id)
    _subscribed_view(context, mailbox)


def _subscribed_view(context: Context, mailbox: models.Mailbox) -> None:
    """The mailbox view's own part, for a viewer already known to be workbench staff of its practice."""
    user = context.require_user()
    _decide(
        context,
        ("mailbox-view", mailbox.pk),
        lambda: require_mailbox_view(user, mailbox, subscribed=_subscribed(context, mailbox)),
    )


def conversation_read(context: Context, conversation: models.Conversation) -> None:
    """Reading a conversation's messages: its patient through the portal, or staff from where they came."""
    if context.patient is not None:
        require_own_conversation(context.patient, conversation)
        _decide(context, ("portal", conversation.practice_id), lambda: require_portal(conversation.practice_id))
        return
    via = context.paths.via(conversation) or models.AccessSource.MAILBOX
    require_conversation_access(context.require_user(), conversation, via, facts=RequestFacts(context))


class RequestFacts:
    """`permissions.AccessFacts` from this request's memo: a page of rows asks the database once per practice."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def workbench_member(self, user: models.User | None, practice_id: int) -> models.Membership:
        return workbench_staff_of(self.context, practice_id)

    def mailbox_view(self, user: models.User, mailbox: models.Mailbox) -> None:
        _subscribed_view(self.context, mailbox)  # `require_place` asked `workbench_member` first


def pool_view(context: Context, mailbox: models.Mailbox) -> None:
    """A mailbox's stats: its subscribers and the practice's mailbox admins (deactivated mailboxes included)."""
    workbench_staff_of(context, mailbox.practice_id)
    user = context.require_user()
    _decide(
        context,
        ("pool-view", mailbox.pk),
        lambda: require_pool_view(
            user,
            mailbox,
            subscribed=_subscribed(context, mailbox),
            admin=_decide(
                context, ("mailbox-admin", mailbox.practice_id), lambda: is_mailbox_admin_of(user, mailbox.practice_id)
            ),
        ),
    )
