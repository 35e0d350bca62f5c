"""Mailbox lifecycle and subscriptions."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from django.db import IntegrityError, transaction

from core import audit
from core.actions._common import clean_mailbox_name, lock_mailbox
from core.errors import DomainError, ErrorCode, not_found
from core.events import emit
from core.models import AccessSource, AuditAction, EventKind, Mailbox, MailboxSubscription, Membership, User
from core.text import require_storable_text, strip_invisible
from permissions import require_active_mailbox, require_mailbox_admin, require_workbench_member


def _duplicate_name(name: str) -> DomainError:
    return DomainError(
        ErrorCode.DUPLICATE_NAME,
        f"A mailbox named '{name}' already exists in this practice (active or deactivated); choose another name.",
        field="name",
    )


def _ensure_unique_name(practice_id: int, name: str, *, exclude_id: int | None = None) -> None:
    clash = Mailbox.objects.filter(practice_id=practice_id, name__iexact=name)
    if exclude_id is not None:
        clash = clash.exclude(pk=exclude_id)
    if clash.exists():
        raise _duplicate_name(name)


def _mailbox_audit(
    user: User, mailbox: Mailbox, operation: str, action: AuditAction, via: AccessSource, **detail
) -> None:
    audit.record(
        operation=operation,
        action=action,
        practice=mailbox.practice_id,
        actor_user=user,
        target=mailbox,
        via=via,
        detail=detail,
    )


def _admin_audit(user: User, mailbox: Mailbox, operation: str, action: AuditAction, **detail) -> None:
    _mailbox_audit(user, mailbox, operation, action, AccessSource.ADMIN, **detail)


def create_mailbox(*, acting_user: User, practice_id: int, name: str) -> Mailbox:
    require_mailbox_admin(acting_user, practice_id)
    name = clean_mailbox_name(name)
    try:
        with transaction.atomic():
            _ensure_unique_name(practice_id, name)
            mailbox = Mailbox.objects.create(practice_id=practice_id, name=name)
            _admin_audit(acting_user, mailbox, "createMailbox", AuditAction.CREATE, name=name)
            emit(EventKind.MAILBOX_CREATED, practice_id=practice_id, mailbox_id=mailbox.pk)
    except IntegrityError as exc:  # a concurrent create with the same name won the race
        raise _duplicate_name(name) from exc
    return mailbox


def rename_mailbox(*, acting_user: User, mailbox_id: int, name: str) -> Mailbox:
    name = clean_mailbox_name(name)
    try:
        with transaction.atomic():
            mailbox = lock_mailbox(mailbox_id)
            require_mailbox_admin(acting_user, mailbox.practice_id)
            _ensure_unique_name(mailbox.practice_id, name, exclude_id=mailbox.pk)
            old_name, mailbox.name = mailbox.name, name
            mailbox.save(update_fields=["name"])
            _admin_audit(acting_user, mailbox, "renameMailbox", AuditAction.UPDATE, old_name=old_name, name=name)
            emit(EventKind.MAILBOX_RENAMED, practice_id=mailbox.practice_id, mailbox_id=mailbox.pk)
    except IntegrityError as exc:
        raise _duplicate_name(name) from exc
    return mailbox


AUTO_REPLY_MAX = 2_000


def clean_auto_reply(text: str | None) -> str | None:
    """None, empty or blank turns the auto-reply off."""
    require_storable_text(text, "text")
    cleaned = strip_invisible(unicodedata.normalize("NFC", text or ""))
    if len(cleaned) > AUTO_REPLY_MAX:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"Auto-replies are at most {AUTO_REPLY_MAX:,} characters.", field="text"
        )
    return cleaned or None


def set_mailbox_auto_reply(*, acting_user: User, mailbox_id: int, text: str | None) -> Mailbox:
    """The text a patient gets back when their message opens a conversation here or reactivates one (SPEC §6)."""
    text = clean_auto_reply(text)
    with transaction.atomic():
        mailbox = lock_mailbox(mailbox_id)
        require_mailbox_admin(acting_user, mailbox.practice_id)
        if mailbox.auto_reply != text:
            mailbox.auto_reply = text
            mailbox.save(update_fields=["auto_reply"])
            _admin_audit(
                acting_user,
                mailbox,
                "setMailboxAutoReply",
                AuditAction.UPDATE,
                on=text is not None,
                length=len(text or ""),
            )
            emit(EventKind.MAILBOX_AUTO_REPLY_CHANGED, practice_id=mailbox.practice_id, mailbox_id=mailbox.pk)
    return mailbox


def _set_active(acting_user: User, mailbox_id: int, active: bool) -> Mailbox:
    with transaction.atomic():
        mailbox = lock_mailbox(mailbox_id)
        require_mailbox_admin(acting_user, mailbox.practice_id)
        if mailbox.is_active != active:
            mailbox.is_active = active
            mailbox.save(update_fields=["is_active"])
            operation = "activateMailbox" if active else "deactivateMailbox"
            _admin_audit(acting_user, mailbox, operation, AuditAction.UPDATE)
            kind = EventKind.MAILBOX_ACTIVATED if active else EventKind.MAILBOX_DEACTIVATED
            emit(kind, practice_id=mailbox.practice_id, mailbox_id=mailbox.pk)
    return mailbox


def deactivate_mailbox(*, acting_user: User, mailbox_id: int) -> Mailbox:
    return _set_active(acting_user, mailbox_id, False)


def activate_mailbox(*, acting_user: User, mailbox_id: int) -> Mailbox:
    return _set_active(acting_user, mailbox_id, True)


def delete_mailbox(*, acting_user: User, mailbox_id: int) -> int:
    """Deletes an empty mailbox. The row lock makes it race-free against `start_conversation`,
    which takes the same lock before inserting."""
    with transaction.atomic():
        mailbox = lock_mailbox(mailbox_id)
        require_mailbox_admin(acting_user, mailbox.practice_id)
        if mailbox.conversations.exists():
            raise DomainError(
                ErrorCode.MAILBOX_NOT_EMPTY,
                f"The mailbox '{mailbox.name}' has conversations (active or archived) and cannot be deleted; "
                "deactivate it instead.",
            )
        subscriber_ids = list(mailbox.subscriptions.values_list("user_id", flat=True))
        _admin_audit(acting_user, mailbox, "deleteMailbox", AuditAction.DELETE, name=mailbox.name)
        emit(
            EventKind.MAILBOX_DELETED,
            practice_id=mailbox.practice_id,
            mailbox_id=mailbox.pk,
            user_ids=subscriber_ids,
            data={"name": mailbox.name},
        )
        mailbox.subscriptions.all().delete()
        mailbox.delete()
    return mailbox_id


def _own_subscription_changed(user: User, mailbox: Mailbox, operation: str, action: AuditAction) -> None:
    _mailbox_audit(user, mailbox, operation, action, AccessSource.MAILBOX)
    emit(EventKind.SUBSCRIPTIONS_CHANGED, practice_id=mailbox.practice_id, mailbox_id=mailbox.pk, user_ids=[user.pk])


def subscribe_to_mailbox(*, acting_user: User, mailbox_id: int) -> Mailbox:
    with transaction.atomic():
        mailbox = lock_mailbox(mailbox_id)
        require_workbench_member(acting_user, mailbox.practice_id)
        require_active_mailbox(mailbox)
        _, created = MailboxSubscription.objects.get_or_create(mailbox=mailbox, user=acting_user)
        if created:
            _own_subscription_changed(acting_user, mailbox, "subscribeToMailbox", AuditAction.CREATE)
    return mailbox


def unsubscribe_from_mailbox(*, acting_user: User, mailbox_id: int) -> Mailbox:
    with transaction.atomic():
        mailbox = lock_mailbox(mailbox_id)
        require_workbench_member(acting_user, mailbox.practice_id)
        deleted, _ = MailboxSubscription.objects.filter(mailbox=mailbox, user=acting_user).delete()
        if deleted:
            _own_subscription_changed(acting_user, mailbox, "unsubscribeFromMailbox", AuditAction.DELETE)
    return mailbox


def _refuse_new_deactivated(added: set[int], active: dict[int, bool]) -> None:
    if any(not active[pk] for pk in added):
        raise DomainError(
            ErrorCode.MAILBOX_DEACTIVATED,
            "Nobody can be subscribed to a deactivated mailbox; activate it first.",
        )


def _practice_member_ids(practice_id: int, user_ids: Iterable[int]) -> set[int]:
    wanted = set(user_ids)
    found = set(
        Membership.objects.filter(practice_id=practice_id, user_id__in=wanted).values_list("user_id", flat=True)
    )
    if wanted - found:
        raise not_found("user")
    return found


def _replace_subscribers(mailbox: Mailbox, wanted: set[int]) -> tuple[set[int], set[int]]:
    current = set(mailbox.subscriptions.values_list("user_id", flat=True))
    added, removed = wanted - current, current - wanted
    MailboxSubscription.objects.filter(mailbox=mailbox, user_id__in=removed).delete()
    MailboxSubscription.objects.bulk_create([MailboxSubscription(mailbox=mailbox, user_id=u) for u in sorted(added)])
    return added, removed


def set_mailbox_subscribers(*, acting_user: User, mailbox_id: int, user_ids: Iterable[int]) -> Mailbox:
    with transaction.atomic():
        mailbox = lock_mailbox(mailbox_id)
        require_mailbox_admin(acting_user, mailbox.practice_id)
        wanted = _practice_member_ids(mailbox.practice_id, user_ids)
        current = set(mailbox.subscriptions.values_list("user_id", flat=True))
        if wanted - current:
            _refuse_new_deactivated({mailbox.pk}, {mailbox.pk: mailbox.is_active})
        added, removed = _replace_subscribers(mailbox, wanted)
        if added or removed:
            _admin_audit(
                acting_user,
                mailbox,
                "setMailboxSubscribers",
                AuditAction.UPDATE,
                added=sorted(added),
                removed=sorted(removed),
            )
            emit(
                EventKind.SUBSCRIPTIONS_CHANGED,
                practice_id=mailbox.practice_id,
                mailbox_id=mailbox.pk,
                user_ids=added | removed,
            )
    return mailbox


def set_user_mailbox_access(
    *,
    acting_user: User,
    user_id: int,
    practice_id: int,
    all_mailboxes: bool | None = None,
    mailbox_ids: Iterable[int] | None = None,
) -> None:
    """The "Logins → Mailbox Access" page: subscribe one user to all of a practice's mailboxes, or a chosen set.

    `all_mailboxes=True` subscribes to every mailbox; `False` unsubscribes from all; otherwise `mailbox_ids`
    is the exact set to keep.
    """
    if all_mailboxes is None and mailbox_ids is None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Pass allMailboxes or mailboxIds.")
    with transaction.atomic():
        require_mailbox_admin(acting_user, practice_id)
        _practice_member_ids(practice_id, [user_id])
        mailboxes = Mailbox.objects.select_for_update().filter(practice_id=practice_id)
        active = dict(mailboxes.values_list("pk", "is_active"))
        current = set(
            MailboxSubscription.objects.filter(user_id=user_id, mailbox__practice_id=practice_id).values_list(
                "mailbox_id", flat=True
            )
        )
        if all_mailboxes is True:
            # Every active mailbox; subscriptions to deactivated ones are kept for when they come back.
            wanted = {pk for pk, is_active in active.items() if is_active} | current
        elif all_mailboxes is False and mailbox_ids is None:
            wanted = set()
        else:
            wanted = set(mailbox_ids or ())
            if wanted - active.keys():
                raise not_found("mailbox")
            _refuse_new_deactivated(wanted - current, active)
        added, removed = wanted - current, current - wanted
        MailboxSubscription.objects.filter(user_id=user_id, mailbox_id__in=removed).delete()
        MailboxSubscription.objects.bulk_create(
            [MailboxSubscription(mailbox_id=m, user_id=user_id) for m in sorted(added)]
        )
        if added or removed:
            audit.record(
                operation="setUserMailboxAccess",
                action=AuditAction.UPDATE,
                practice=practice_id,
                actor_user=acting_user,
                via=AccessSource.ADMIN,
                detail={"user_id": user_id, "added": sorted(added), "removed": sorted(removed)},
            )
            for mailbox_id in sorted(added | removed):
                emit(
                    EventKind.SUBSCRIPTIONS_CHANGED, practice_id=practice_id, mailbox_id=mailbox_id, user_ids=[user_id]
                )
