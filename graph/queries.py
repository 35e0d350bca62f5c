"""Root queries: parse arguments, call one `core.reads` function or scoped queryset, return."""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry import relay

from core import models, reads
from core.admin_reads import audit_events, meaningful_use, practice_settings, user_mailbox_access
from graph import guards, message_search
from graph.ids import decode_id
from graph.pagination import Connection, PageArgs, paginate
from graph.types import (
    AUDIT_ORDER,
    AccessSource,
    AuditAction,
    AuditEventType,
    ClinicianRef,
    ConversationType,
    Info,
    MailboxAccessEntry,
    MailboxStatus,
    MailboxType,
    MeaningfulUse,
    MembershipType,
    PatientType,
    PortalNotifications,
    PracticeMailboxAccess,
    PracticeSettingType,
    PracticeType,
    QuickReplyType,
    UserType,
    selected_mailbox_facts,
    with_siblings,
)
from permissions import practices_visible_to, require_member


def to_access_source(via: AccessSource | None) -> models.AccessSource:
    """`via: null` means the default, the mailbox view."""
    return models.AccessSource(via.value) if via is not None else models.AccessSource.MAILBOX


def access_rows(rows) -> list[PracticeMailboxAccess]:
    return [
        PracticeMailboxAccess(
            practice=row.practice,
            all_mailboxes=row.all_mailboxes,
            mailboxes=[MailboxAccessEntry(mailbox=m, subscribed=s) for m, s in row.mailboxes],
        )
        for row in rows
    ]


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in staff user.")
    def me(self, info: Info) -> UserType:
        return info.context.require_user()

    @strawberry.field(description="Practices the viewer belongs to (the practice switcher).")
    def practices(self, info: Info) -> list[PracticeType]:
        return list(practices_visible_to(info.context.require_user()).order_by("name", "pk"))

    @strawberry.field
    def mailboxes(
        self,
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
        rows = with_siblings(list(rows))
        guards.note_workbench_staff(info.context, decode_id(practice_id, "Practice"))
        return rows

    @strawberry.field
    def mailbox(self, info: Info, id: strawberry.ID) -> MailboxType | None:
        mailbox = reads.get_mailbox(
            user=info.context.require_user(), mailbox_id=decode_id(id, "Mailbox"), facts=selected_mailbox_facts(info)
        )
        guards.note_workbench_staff(info.context, mailbox.practice_id)
        return mailbox

    @strawberry.field
    def conversation(
        self, info: Info, id: strawberry.ID, via: AccessSource | None = AccessSource.MAILBOX
    ) -> ConversationType | None:
        conversation = reads.open_conversation(
            user=info.context.require_user(),
            conversation_id=decode_id(id, "Conversation"),
            via=to_access_source(via),
        )
        conversation._via = to_access_source(via)
        guards.note_workbench_staff(info.context, conversation.practice_id)
        if conversation._via == models.AccessSource.MAILBOX:
            guards.note_mailbox_view(info.context, conversation.mailbox_id)
        return conversation

    @strawberry.field(description="Patients by name tokens (any order, prefixes), date of birth or account number.")
    def search_patients(
        self, info: Info, practice_id: strawberry.ID, query: str, first: int | None = 20
    ) -> list[PatientType]:
        return reads.search_patients(
            user=info.context.require_user(),
            practice_id=decode_id(practice_id, "Practice"),
            query=query,
            limit=20 if first is None else first,
        )

    @strawberry.field(
        description="Messages of the viewer's subscribed active mailboxes (or of `mailboxId`, which the viewer must be "
        "subscribed to) having every word of `query`, in any order, as the start of one of their words, ignoring "
        "case and accents; newest first. Staff only; at most 50 per page (`first`); the query text is audited."
    )
    def search_messages(
        self,
        info: Info,
        practice_id: strawberry.ID,
        query: str,
        mailbox_id: strawberry.ID | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> message_search.MessageSearchConnection:
        return message_search.search_messages(info, practice_id, query, mailbox_id, first, after)

    @strawberry.field(description="A patient; `conversations` is the chart-summary view across all mailboxes.")
    def patient(self, info: Info, id: strawberry.ID) -> PatientType | None:
        return reads.get_patient(user=info.context.require_user(), patient_id=decode_id(id, "Patient"))

    @strawberry.field(
        description="Logins → Mailbox Access: per practice the user belongs to and the viewer administers."
    )
    def user_mailbox_access(self, info: Info, user_id: strawberry.ID) -> list[PracticeMailboxAccess]:
        return access_rows(
            user_mailbox_access(acting_user=info.context.require_user(), user_id=decode_id(user_id, "User"))
        )

    @strawberry.field(description="Members of a practice with their role, clinician flag and permissions.")
    def practice_users(self, info: Info, practice_id: strawberry.ID) -> list[MembershipType]:
        user = info.context.require_user()
        practice_id = decode_id(practice_id, "Practice")
        require_member(user, practice_id)
        return list(
            models.Membership.objects.filter(practice_id=practice_id)
            .select_related("user", "practice")
            .prefetch_related("grants")
            .order_by("user__full_name", "user__username")
        )

    @strawberry.field(
        description="The practice's quick replies by title (every staff member); `query` keeps those whose title "
        "holds every word typed."
    )
    def quick_replies(self, info: Info, practice_id: strawberry.ID, query: str | None = None) -> list[QuickReplyType]:
        return list(
            reads.quick_replies(
                user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice"), query=query
            )
        )

    @strawberry.field(description="The practice's advanced settings (owners and administrators).")
    def practice_settings(self, info: Info, practice_id: strawberry.ID) -> list[PracticeSettingType]:
        rows = practice_settings(
            acting_user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice")
        )
        return [PracticeSettingType(key=s.key, value=s.value) for s in rows]

    @strawberry.field(description="The audit trail, newest first (owners and administrators).")
    def audit_events(
        self,
        info: Info,
        practice_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
        user_id: strawberry.ID | None = None,
        patient_id: strawberry.ID | None = None,
        action: AuditAction | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> Connection[AuditEventType]:
        rows = audit_events(
            acting_user=info.context.require_user(),
            practice_id=decode_id(practice_id, "Practice"),
            user_id=decode_id(user_id, "User") if user_id else None,
            patient_id=decode_id(patient_id, "Patient") if patient_id else None,
            action=action,
            since=since,
            until=until,
        )
        return paginate(rows, PageArgs(first=first, after=after), AUDIT_ORDER)

    @strawberry.field(description="Meaningful Use: a clinician subscribed to an active mailbox.")
    def meaningful_use(self, info: Info, practice_id: strawberry.ID) -> MeaningfulUse:
        clinicians = meaningful_use(
            acting_user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice")
        )
        return MeaningfulUse(
            counts_as_patient_messaging=bool(clinicians),
            clinicians=[
                ClinicianRef(id=relay.GlobalID("User", str(u.pk)), full_name=u.display_name()) for u in clinicians
            ],
        )

    @strawberry.field(description="Portal: the practice's active mailboxes a patient can write to.")
    def portal_mailboxes(self, info: Info) -> list[MailboxType]:
        return with_siblings(list(reads.portal_mailboxes(patient=info.context.require_patient())))

    @strawberry.field(description="Portal: whether the patient gets new-message notices by email.")
    def portal_notifications(self, info: Info) -> PortalNotifications:
        return PortalNotifications.of(info.context.require_patient())

    @strawberry.field(description="Portal: the patient's own conversations, most recent first.")
    def portal_conversations(self, info: Info) -> list[ConversationType]:
        return with_siblings(list(reads.portal_conversations(patient=info.context.require_patient())))
