"""Who may see and do what. Every access decision of the service is a function here.

Two kinds of function:
- `require_*` decide one operation and raise `DomainError` with the SPEC code, or return what they checked;
- `*_visible_to` return querysets scoped to what a viewer may see, so records of another practice
  simply do not exist for them (NOT_FOUND, never FORBIDDEN).
"""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery

from core.errors import DomainError, ErrorCode, not_found
from core.models import (
    PORTAL_SETTING,
    WORKBENCH_SETTING,
    AccessSource,
    Attachment,
    Conversation,
    Mailbox,
    MailboxSubscription,
    Membership,
    Message,
    MessageDirection,
    Patient,
    PermissionGrant,
    Practice,
    PracticePermission,
    PracticeSetting,
    Role,
    User,
)

ADMIN_ROLES = (Role.OWNER, Role.ADMINISTRATOR)


# ---- facts ---------------------------------------------------------------------------------------


def membership_of(user: User | None, practice_id: int) -> Membership | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return Membership.objects.filter(user=user, practice_id=practice_id).first()


def setting_enabled(practice_id: int, key: str) -> bool:
    value = PracticeSetting.objects.filter(practice_id=practice_id, key=key).values_list("value", flat=True).first()
    return _switched_on(value)


def _switched_on(value: str | None) -> bool:
    return (value or "F").strip().upper() == "T"


def has_permission(membership: Membership, permission: PracticePermission) -> bool:
    return PermissionGrant.objects.filter(membership=membership, permission=permission).exists()


def is_mailbox_admin(membership: Membership) -> bool:
    return has_permission(membership, PracticePermission.MAILBOX_ADMIN_PERMISSION)


def is_mailbox_admin_of(user: User, practice_id: int) -> bool:
    return PermissionGrant.objects.filter(
        membership__user=user,
        membership__practice_id=practice_id,
        permission=PracticePermission.MAILBOX_ADMIN_PERMISSION,
    ).exists()


def is_practice_admin(membership: Membership) -> bool:
    return membership.role in ADMIN_ROLES


def is_subscribed(user: User, mailbox_id: int) -> bool:
    return MailboxSubscription.objects.filter(user=user, mailbox_id=mailbox_id).exists()


# ---- decisions -----------------------------------------------------------------------------------


def require_authenticated(user: User | None) -> User:
    if user is None or not user.is_authenticated or not user.is_active:
        raise _not_signed_in()
    return user


def _not_signed_in() -> DomainError:
    return DomainError(ErrorCode.UNAUTHENTICATED, "Sign in or send a valid 'Authorization: Bearer <token>' header.")


def require_member(user: User | None, practice_id: int) -> Membership:
    require_authenticated(user)
    membership = membership_of(user, practice_id)
    if membership is None:
        raise not_found("practice")
    return membership


def require_workbench(practice_id: int) -> None:
    if not setting_enabled(practice_id, WORKBENCH_SETTING):
        raise _workbench_off()


def _workbench_off() -> DomainError:
    return DomainError(
        ErrorCode.FEATURE_DISABLED,
        f"The mailbox workbench is off for this practice; an administrator can set {WORKBENCH_SETTING} = T.",
    )


def require_portal(practice_id: int) -> None:
    if not setting_enabled(practice_id, PORTAL_SETTING):
        raise DomainError(
            ErrorCode.FEATURE_DISABLED,
            "Mailbox messaging is not offered by this practice's portal; please contact the practice directly.",
        )


def require_workbench_member(user: User | None, practice_id: int) -> Membership:
    """A staff mailbox operation: an active member of the practice, with the workbench switched on
    (`require_member` then `require_workbench`, with the account's current `is_active`, read in one query: every
    workbench request and live re-check asks this)."""
    require_authenticated(user)
    switch = PracticeSetting.objects.filter(practice_id=practice_id, key=WORKBENCH_SETTING).values("value")[:1]
    membership = (
        Membership.objects.filter(user=user, practice_id=practice_id)
        .annotate(_workbench=Subquery(switch), _user_active=F("user__is_active"))
        .first()
    )
    if membership is not None and not membership._user_active:  # disabled since the request or socket began
        raise _not_signed_in()
    if membership is None:
        raise not_found("practice")
    if not _switched_on(membership._workbench):
        raise _workbench_off()
    return membership


def require_mailbox_admin(user: User | None, practice_id: int) -> Membership:
    membership = require_workbench_member(user, practice_id)
    if not is_mailbox_admin(membership):
        raise DomainError(
            ErrorCode.FORBIDDEN,
            "Only mailbox admins can do this; ask a practice owner or administrator for MAILBOX_ADMIN_PERMISSION.",
        )
    return membership


def require_message_retraction(user: User | None, message: Message, conversation: Conversation) -> Membership:
    """Withdraw a message: its sender or a mailbox admin of the practice (staff messages only: SPEC §6)."""
    membership = require_workbench_member(user, conversation.practice_id)
    if message.sender_user_id != user.pk and not is_mailbox_admin(membership):
        raise DomainError(ErrorCode.FORBIDDEN, "Only the message's sender or a mailbox admin can withdraw it.")
    if message.direction == MessageDirection.INTERNAL_NOTE:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "An internal note cannot be withdrawn: the patient never saw it.")
    if message.direction != MessageDirection.TO_PATIENT:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Only messages from the practice can be withdrawn.")
    return membership


def require_practice_admin(user: User | None, practice_id: int) -> Membership:
    membership = require_member(user, practice_id)
    if not is_practice_admin(membership):
        raise DomainError(
            ErrorCode.FORBIDDEN, "Only the practice's owners and administrators can change permissions and settings."
        )
    return membership


def require_active_mailbox(mailbox: Mailbox) -> None:
    if not mailbox.is_active:
        raise DomainError(
            ErrorCode.MAILBOX_DEACTIVATED,
            f"The mailbox '{mailbox.name}' is deactivated; a mailbox admin can activate it again.",
        )


def require_mailbox_view(user: User, mailbox: Mailbox, *, subscribed: bool | None = None) -> None:
    """Working a mailbox's conversations from the mailbox view: subscribers of an active mailbox only.

    `subscribed` is the viewer's subscription when the caller already loaded it for a whole page of mailboxes.
    """
    if subscribed is None:
        subscribed = is_subscribed(user, mailbox.pk)
    if not subscribed:
        raise DomainError(
            ErrorCode.NOT_SUBSCRIBED,
            f"Subscribe to the mailbox '{mailbox.name}' to see and work its conversations.",
        )
    require_active_mailbox(mailbox)


def require_conversation_access(user: User | None, conversation: Conversation, via: AccessSource) -> Membership:
    """Read or act on a conversation: from the mailbox view as a subscriber, from the chart as any staff member."""
    membership = require_workbench_member(user, conversation.practice_id)
    if via == AccessSource.MAILBOX:
        # A live stream's conversation comes with the viewer's subscription (permissions.live.stream_conversation).
        require_mailbox_view(user, conversation.mailbox, subscribed=getattr(conversation, "_viewer_subscribed", None))
    elif via != AccessSource.CHART_SUMMARY:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "via must be MAILBOX or CHART_SUMMARY.")
    return membership


def require_pool_view(
    user: User | None, mailbox: Mailbox, *, subscribed: bool | None = None, admin: bool | None = None
) -> None:
    """A mailbox's stats: its subscribers and the practice's mailbox admins. `subscribed` and `admin` are the
    viewer's facts when the caller has loaded them for a whole page already."""
    if admin is None:
        admin = is_mailbox_admin(require_workbench_member(user, mailbox.practice_id))
    if subscribed is None:
        subscribed = is_subscribed(user, mailbox.pk)
    if admin or subscribed:
        return
    raise DomainError(
        ErrorCode.NOT_SUBSCRIBED, f"Subscribe to the mailbox '{mailbox.name}' to see how its team is doing."
    )


def require_own_conversation(patient: Patient | None, conversation: Conversation) -> None:
    """A patient's own thread; anyone else's is NOT_FOUND."""
    if patient is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "Sign in to the patient portal.")
    if conversation.patient_id != patient.pk:
        raise not_found("conversation")


def require_patient_conversation(patient: Patient | None, conversation: Conversation) -> None:
    require_own_conversation(patient, conversation)
    require_portal(patient.practice_id)


def require_attachment_access(
    attachment: Attachment | None,
    *,
    user: User | None = None,
    patient: Patient | None = None,
    via: AccessSource | str | None = None,
) -> AccessSource:
    """Download a file: everyone its message is visible to, from whichever place. Returns the access source to
    audit.

    Staff: any member of the practice with the workbench on, since every such member may read the message from
    the patient's chart. `via` (default CHART_SUMMARY) only labels the audit row: a url handed out by the mailbox
    view must open for a colleague who reads the same message from the chart, or for the subscriber after they
    unsubscribed or the mailbox was deactivated (its history stays part of the record).
    Patients: their own conversations, with the portal switched on. Unknown, unattached (no committed
    message) and other people's attachments are all the same NOT_FOUND.
    """
    if user is None and patient is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "Sign in or send a valid 'Authorization: Bearer <token>' header.")
    if attachment is None or attachment.message_id is None:
        raise not_found("attachment")
    conversation = attachment.message.conversation
    if patient is not None:
        # A note's file does not exist for the patient, exactly like another patient's; a withdrawn message's files
        # are gone for the patient (staff keep them, the record keeps everything).
        if (
            conversation.patient_id != patient.pk
            or attachment.message.is_note
            or attachment.message.retracted_at is not None
        ):
            raise not_found("attachment")
        require_portal(conversation.practice_id)
        return AccessSource.PORTAL
    if membership_of(user, conversation.practice_id) is None:
        raise not_found("attachment")
    if via and via not in (AccessSource.MAILBOX, AccessSource.CHART_SUMMARY):
        raise DomainError(ErrorCode.VALIDATION_ERROR, "via must be MAILBOX or CHART_SUMMARY.")
    require_conversation_access(user, conversation, AccessSource.CHART_SUMMARY)
    return AccessSource(via or AccessSource.CHART_SUMMARY)


# ---- scoped querysets ----------------------------------------------------------------------------


def practice_ids_of(user: User | None) -> QuerySet:
    if user is None or not user.is_authenticated or not user.is_active:
        return Membership.objects.none().values("practice_id")
    return Membership.objects.filter(user=user).values("practice_id")


def practices_visible_to(user: User | None) -> QuerySet[Practice]:
    return Practice.objects.filter(pk__in=practice_ids_of(user))


def mailboxes_visible_to(user: User | None) -> QuerySet[Mailbox]:
    """Every mailbox of the viewer's practices (name, status, subscribers are visible to all members)."""
    return Mailbox.objects.filter(practice_id__in=practice_ids_of(user))


def patients_visible_to(user: User | None) -> QuerySet[Patient]:
    return Patient.objects.filter(practice_id__in=practice_ids_of(user))


def conversations_in_subscribed_mailboxes(user: User | None) -> QuerySet[Conversation]:
    """Conversations the viewer may open from the mailbox view."""
    if user is None or not user.is_authenticated:
        return Conversation.objects.none()
    subscribed = MailboxSubscription.objects.filter(user=user, mailbox_id=OuterRef("mailbox_id"))
    return Conversation.objects.filter(practice_id__in=practice_ids_of(user), mailbox__is_active=True).filter(
        Exists(subscribed)
    )


def conversations_visible_to(user: User | None) -> QuerySet[Conversation]:
    """Conversations the viewer may open from a patient's chart: every one of their practices."""
    return Conversation.objects.filter(practice_id__in=practice_ids_of(user))


def messages_visible_to(user: User | None) -> QuerySet[Message]:
    return Message.objects.filter(conversation__practice_id__in=practice_ids_of(user))


def users_visible_to(user: User | None) -> QuerySet[User]:
    """Colleagues: users sharing at least one practice with the viewer."""
    return User.objects.filter(memberships__practice_id__in=practice_ids_of(user)).distinct()


def conversations_of_patient(patient: Patient) -> QuerySet[Conversation]:
    return Conversation.objects.filter(patient=patient)
