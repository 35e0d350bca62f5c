"""Who may see and do what. Every access decision of the service is a function here.

Three kinds of function:
- `require_*` decide one operation and raise `DomainError` with the SPEC code, or return what they checked;
- `*_visible_to` / `*_of` return what a viewer may see (querysets or records scoped to their practices), so
  records of another practice simply do not exist for them (NOT_FOUND, never FORBIDDEN);
- `visible_*` blank out what a viewer may not see of a record they may read.

A decision that needs facts a caller may already hold for a whole page (membership, subscriptions) takes them
through `AccessFacts`: the rule stays here, the GraphQL layer only remembers the facts per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery

from core.errors import DomainError, ErrorCode, not_found, not_signed_in
from core.models import (
    PORTAL_SETTING,
    WORKBENCH_SETTING,
    AccessSource,
    Attachment,
    AuditEvent,
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
from core.prepared import Prepared

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
        raise not_signed_in()
    return user


def require_staff_caller(user: User | None, patient: Patient | None, refused: DomainError | None = None) -> User:
    """A staff operation's caller: the signed-in user. A refused credential answers its own error (`refused`); a
    patient is told the operation is for staff, nobody at all that they must sign in."""
    return _caller(user, patient, refused, "This operation is for practice staff; patients use the portal.")


def require_patient_caller(user: User | None, patient: Patient | None, refused: DomainError | None = None) -> Patient:
    """A portal operation's caller: the patient of a portal token (`require_staff_caller`'s other side)."""
    return _caller(patient, user, refused, "This operation is for patients (portal tokens).")


def _caller(wanted, other, refused: DomainError | None, for_others: str):
    if wanted is not None:
        return wanted
    if refused is not None:
        raise refused
    if other is not None:
        raise DomainError(ErrorCode.FORBIDDEN, for_others)
    raise not_signed_in()


def require_member(user: User | None, practice_id: int) -> Membership:
    require_authenticated(user)
    membership = membership_of(user, practice_id)
    if membership is None:
        raise not_found("practice")
    return membership


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


def _workbench_member(prepared: Prepared) -> QuerySet[Membership]:
    practice = prepared.value("practice")
    switch = PracticeSetting.objects.filter(practice_id=practice, key=WORKBENCH_SETTING).values("value")[:1]
    return (
        Membership.objects.filter(user_id=prepared.value("user"), practice_id=practice)
        .annotate(_workbench=Subquery(switch), _user_active=F("user__is_active"))
        .order_by("pk")[:1]
    )


_WORKBENCH_MEMBER = Prepared(_workbench_member)


def require_workbench_member(user: User | None, practice_id: int) -> Membership:
    """A staff mailbox operation: an active member of the practice, with the workbench switched on
    (`require_member` then `require_workbench`, with the account's current `is_active`, read in one query: every
    workbench request and live re-check asks this)."""
    require_authenticated(user)
    [membership] = _WORKBENCH_MEMBER.rows(values={"user": user.pk, "practice": practice_id}) or [None]
    if membership is not None and not membership._user_active:  # disabled since the request or socket began
        raise not_signed_in()
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


STAFF_PLACES = (AccessSource.MAILBOX, AccessSource.CHART_SUMMARY)


def staff_place(via: AccessSource | str | None, *, default: AccessSource | None = None) -> AccessSource:
    """The place a staff member works a conversation from (`via`): MAILBOX or CHART_SUMMARY. The one check of
    `via`; an empty one is `default` where the caller has one, anything else is VALIDATION_ERROR."""
    if not via and default is not None:
        return default
    if via not in STAFF_PLACES:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "via must be MAILBOX or CHART_SUMMARY.")
    return via if isinstance(via, AccessSource) else AccessSource(via)


class AccessFacts(Protocol):
    """Where a decision gets the viewer's facts: the database (`DATABASE`), or a caller that loaded them already."""

    def workbench_member(self, user: User | None, practice_id: int) -> Membership: ...

    def mailbox_view(self, user: User, mailbox: Mailbox) -> None: ...


class DatabaseFacts:
    """Every fact read when it is asked for; `subscribed`, when given, is the viewer's subscription to the mailbox
    in question (read together with it)."""

    def __init__(self, *, subscribed: bool | None = None) -> None:
        self.subscribed = subscribed

    def workbench_member(self, user: User | None, practice_id: int) -> Membership:
        return require_workbench_member(user, practice_id)

    def mailbox_view(self, user: User, mailbox: Mailbox) -> None:
        require_mailbox_view(user, mailbox, subscribed=self.subscribed)


DATABASE = DatabaseFacts()


def require_place(
    user: User | None,
    practice_id: int,
    mailbox: Mailbox | Callable[[], Mailbox],
    via: AccessSource | str,
    *,
    facts: AccessFacts = DATABASE,
) -> Membership:
    """The rule of `via`: a workbench member of the practice; from the mailbox view also a subscriber of the active
    mailbox, from the chart nothing more. `mailbox` may be a callable, so the chart's path never loads it."""
    membership = facts.workbench_member(user, practice_id)
    if staff_place(via) == AccessSource.MAILBOX:
        facts.mailbox_view(user, mailbox() if callable(mailbox) else mailbox)
    return membership


def require_conversation_access(
    user: User | None, conversation: Conversation, via: AccessSource | str, *, facts: AccessFacts = DATABASE
) -> Membership:
    """Read or act on a conversation: from the mailbox view as a subscriber, from the chart as any staff member."""
    return require_place(user, conversation.practice_id, lambda: conversation.mailbox, via, facts=facts)


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
        raise not_signed_in()
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
        raise not_signed_in()
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
    place = staff_place(via, default=AccessSource.CHART_SUMMARY)
    require_conversation_access(user, conversation, AccessSource.CHART_SUMMARY)
    return place


# ---- scoped querysets ----------------------------------------------------------------------------


def practice_ids_of(user: User | None) -> QuerySet:
    if user is None or not user.is_authenticated or not user.is_active:
        return Membership.objects.none().values("practice_id")
    return Membership.objects.filter(user=user).values("practice_id")


def practices_visible_to(user: User | None) -> QuerySet[Practice]:
    return Practice.objects.filter(pk__in=practice_ids_of(user))


def patient_of_practice(patient_id: int, practice_id: int) -> Patient:
    """A patient of this practice; another practice's is NOT_FOUND like an unknown id."""
    patient = Patient.objects.filter(pk=patient_id, practice_id=practice_id).first()
    if patient is None:
        raise not_found("patient")
    return patient


def memberships_visible_to(viewer: User | None, user_ids) -> QuerySet[Membership]:
    """These users' memberships in the practices the viewer shares with them."""
    return Membership.objects.filter(user_id__in=user_ids, practice_id__in=practice_ids_of(viewer))


def administered_memberships(acting_user: User | None, user_id: int) -> list[Membership]:
    """The user's memberships in shared practices whose mailboxes the acting user administers.

    A user sharing no practice with the acting user is NOT_FOUND; one the acting user may not manage in
    any shared practice gets that practice's refusal (FORBIDDEN, or FEATURE_DISABLED with the workbench off).
    """
    require_authenticated(acting_user)
    shared = list(
        Membership.objects.filter(user_id=user_id, practice_id__in=practice_ids_of(acting_user))
        .select_related("practice")
        .order_by("practice__name", "practice_id")
    )
    if not shared:
        raise not_found("user")
    memberships, refusals = [], []
    for membership in shared:
        try:
            require_mailbox_admin(acting_user, membership.practice_id)
        except DomainError as refusal:
            refusals.append(refusal)
        else:
            memberships.append(membership)
    if not memberships:
        raise refusals[0]
    return memberships


def audit_events_visible_to(acting_user: User | None, practice_id: int) -> QuerySet[AuditEvent]:
    """The practice's audit trail, for its owners and administrators; each row knows whether its actor is a member
    of the practice (`visible_actor_user`)."""
    require_practice_admin(acting_user, practice_id)
    # A refused probe by someone of another practice is filed here too, but who they are stays theirs.
    actor_is_member = Exists(Membership.objects.filter(user=OuterRef("actor_user"), practice_id=practice_id))
    return AuditEvent.objects.filter(practice_id=practice_id).annotate(actor_is_member=actor_is_member)


def visible_actor_user(event: AuditEvent) -> User | None:
    """Null when the actor belongs to another practice (a refused cross-practice probe)."""
    return event.actor_user if getattr(event, "actor_is_member", False) else None


def visible_actor_patient(event: AuditEvent) -> Patient | None:
    """Null when the patient belongs to another practice."""
    patient = event.actor_patient
    return patient if patient is not None and patient.practice_id == event.practice_id else None
