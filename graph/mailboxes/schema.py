"""Root fields of mailboxes: lists, one mailbox, mailbox access per user; their changes and subscriptions."""

from __future__ import annotations

import strawberry

from core import actions, admin_reads, models, reads, viewer_facts
from graph import guards
from graph.batching import with_siblings
from graph.context import Info, fresh
from graph.enums import MailboxStatus
from graph.ids import decode_id, decode_ids
from graph.mailboxes.types import MailboxAccessEntry, MailboxType, PracticeMailboxAccess, selected_mailbox_facts


def access_rows(rows) -> list[PracticeMailboxAccess]:
    return [
        PracticeMailboxAccess(
            practice=row.practice,
            all_mailboxes=row.all_mailboxes,
            mailboxes=[MailboxAccessEntry(mailbox=m, subscribed=s) for m, s in row.mailboxes],
        )
        for row in rows
    ]


def _mailbox(info: Info, mailbox: models.Mailbox) -> models.Mailbox:
    """Re-read with the viewer's annotations (isSubscribed, counts) after a change."""
    fresh(info)
    return viewer_facts.annotate_mailboxes(models.Mailbox.objects.filter(pk=mailbox.pk), info.context.user).get()


@strawberry.field
def mailboxes(
    info: Info,
    practice_id: strawberry.ID,
    status: MailboxStatus | None = MailboxStatus.ACTIVE,
    subscribed_only: bool | None = False,
) -> list[MailboxType]:
    """`status: null` lists active and deactivated mailboxes together."""
    rows = reads.list_mailboxes(
        user=info.context.require_user(),
        practice_id=decode_id(practice_id, "Practice"),
        active=None if status is None else status == MailboxStatus.ACTIVE,
        subscribed_only=bool(subscribed_only),
        facts=selected_mailbox_facts(info),
    )
    rows = with_siblings(info.context, list(rows))
    guards.note_workbench_staff(info.context, decode_id(practice_id, "Practice"))
    return rows


@strawberry.field
def mailbox(info: Info, id: strawberry.ID) -> MailboxType | None:
    mailbox = reads.get_mailbox(
        user=info.context.require_user(), mailbox_id=decode_id(id, "Mailbox"), facts=selected_mailbox_facts(info)
    )
    guards.note_workbench_staff(info.context, mailbox.practice_id)
    return mailbox


@strawberry.field(description="Logins → Mailbox Access: per practice the user belongs to and the viewer administers.")
def user_mailbox_access(info: Info, user_id: strawberry.ID) -> list[PracticeMailboxAccess]:
    return access_rows(
        admin_reads.user_mailbox_access(acting_user=info.context.require_user(), user_id=decode_id(user_id, "User"))
    )


@strawberry.field(description="Portal: the practice's active mailboxes a patient can write to.")
def portal_mailboxes(info: Info) -> list[MailboxType]:
    return with_siblings(info.context, list(reads.portal_mailboxes(patient=info.context.require_patient())))


@strawberry.mutation
def create_mailbox(info: Info, practice_id: strawberry.ID, name: str) -> MailboxType:
    mailbox = actions.create_mailbox(
        acting_user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice"), name=name
    )
    return _mailbox(info, mailbox)


@strawberry.mutation
def rename_mailbox(info: Info, mailbox_id: strawberry.ID, name: str) -> MailboxType:
    mailbox = actions.rename_mailbox(
        acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox"), name=name
    )
    return _mailbox(info, mailbox)


@strawberry.mutation
def deactivate_mailbox(info: Info, mailbox_id: strawberry.ID) -> MailboxType:
    mailbox = actions.deactivate_mailbox(
        acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
    )
    return _mailbox(info, mailbox)


@strawberry.mutation
def activate_mailbox(info: Info, mailbox_id: strawberry.ID) -> MailboxType:
    mailbox = actions.activate_mailbox(
        acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
    )
    return _mailbox(info, mailbox)


@strawberry.mutation(description="Deletes a mailbox that has no conversations; returns its id.")
def delete_mailbox(info: Info, mailbox_id: strawberry.ID) -> strawberry.ID:
    actions.delete_mailbox(acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox"))
    return mailbox_id


@strawberry.mutation(description="Mailbox admins: the auto-reply patients get (null or blank turns it off).")
def set_mailbox_auto_reply(info: Info, mailbox_id: strawberry.ID, text: str | None = None) -> MailboxType:
    mailbox = actions.set_mailbox_auto_reply(
        acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox"), text=text
    )
    return _mailbox(info, mailbox)


@strawberry.mutation
def subscribe_to_mailbox(info: Info, mailbox_id: strawberry.ID) -> MailboxType:
    mailbox = actions.subscribe_to_mailbox(
        acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
    )
    return _mailbox(info, mailbox)


@strawberry.mutation
def unsubscribe_from_mailbox(info: Info, mailbox_id: strawberry.ID) -> MailboxType:
    mailbox = actions.unsubscribe_from_mailbox(
        acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
    )
    return _mailbox(info, mailbox)


@strawberry.mutation
def set_mailbox_subscribers(info: Info, mailbox_id: strawberry.ID, user_ids: list[strawberry.ID]) -> MailboxType:
    mailbox = actions.set_mailbox_subscribers(
        acting_user=info.context.require_user(),
        mailbox_id=decode_id(mailbox_id, "Mailbox"),
        user_ids=decode_ids(user_ids, "User"),
    )
    return _mailbox(info, mailbox)


@strawberry.mutation(description="Subscribe a user to all mailboxes of a practice, none, or a chosen set.")
def set_user_mailbox_access(
    info: Info,
    user_id: strawberry.ID,
    practice_id: strawberry.ID,
    all_mailboxes: bool | None = None,
    mailbox_ids: list[strawberry.ID] | None = None,
) -> list[PracticeMailboxAccess]:
    user = info.context.require_user()
    target = decode_id(user_id, "User")
    actions.set_user_mailbox_access(
        acting_user=user,
        user_id=target,
        practice_id=decode_id(practice_id, "Practice"),
        all_mailboxes=all_mailboxes,
        mailbox_ids=decode_ids(mailbox_ids, "Mailbox") if mailbox_ids is not None else None,
    )
    return access_rows(admin_reads.user_mailbox_access(acting_user=user, user_id=target))
