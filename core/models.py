"""The data model of SPEC §2. Invariants live in the database as constraints, not only in Python."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils.http import urlencode

from core.text import normalize_search_text


class Role(models.TextChoices):
    OWNER = "OWNER"
    ADMINISTRATOR = "ADMINISTRATOR"
    STAFF = "STAFF"


class PracticePermission(models.TextChoices):
    MAILBOX_ADMIN_PERMISSION = "MAILBOX_ADMIN_PERMISSION"


class AccessSource(models.TextChoices):
    MAILBOX = "MAILBOX"
    CHART_SUMMARY = "CHART_SUMMARY"
    PORTAL = "PORTAL"
    ADMIN = "ADMIN"
    # What a live subscription delivered to its viewer (not a person opening a record).
    LIVE = "LIVE"


class ConversationStatus(models.TextChoices):
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"


class MessageDirection(models.TextChoices):
    TO_PATIENT = "TO_PATIENT"
    FROM_PATIENT = "FROM_PATIENT"
    # Staff-only entry in the thread: never shown to the patient, never unread, never an answer.
    INTERNAL_NOTE = "INTERNAL_NOTE"


class ConversationPriority(models.TextChoices):
    # Stored as text whose order is the priority order: "URGENT" > "NORMAL" sorts urgent first descending.
    NORMAL = "NORMAL"
    URGENT = "URGENT"


WORKBENCH_SETTING = "ui.pat_messages_mailbox.enable"
PORTAL_SETTING = "patient_portal.use_mailbox_messaging"


class User(AbstractUser):
    full_name = models.CharField(max_length=200, blank=True)

    def display_name(self) -> str:
        return self.full_name or self.get_full_name() or self.username


class Practice(models.Model):
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.STAFF)
    is_clinician = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "practice"], name="membership_unique_user_practice"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]


class PermissionGrant(models.Model):
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="grants")
    permission = models.CharField(max_length=64, choices=PracticePermission.choices)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["membership", "permission"], name="grant_unique_permission"),
            models.CheckConstraint(
                condition=Q(permission__in=PracticePermission.values), name="grant_permission_valid"
            ),
        ]


class PracticeSetting(models.Model):
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="settings")
    key = models.CharField(max_length=200)
    value = models.CharField(max_length=1000)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["practice", "key"], name="setting_unique_key")]


class Patient(models.Model):
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="patients")
    account_number = models.CharField(max_length=64)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    preferred_pronoun = models.CharField(max_length=40, blank=True)
    date_of_birth = models.DateField()
    # Where new-message notices go (SPEC §6, from the directory file); blank: no notices.
    email = models.EmailField(max_length=254, blank=True, default="", db_default="")
    # The patient's own choice in the portal (setPortalNotifications).
    email_notices = models.BooleanField(default=True, db_default=True)
    # Lowercased, accent-free "first last" for prefix search; kept in sync by save().
    search_name = models.CharField(max_length=201, editable=False)
    # Lowercased account number for case-insensitive exact/prefix matching with a plain index.
    search_account = models.CharField(max_length=64, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["practice", "account_number"], name="patient_unique_account"),
        ]
        indexes = [
            models.Index(fields=["practice", "search_account"], name="patient_account_search"),
            models.Index(fields=["practice", "date_of_birth"], name="patient_dob_search"),
            models.Index(fields=["practice", "search_name"], name="patient_name_search"),
        ]

    def save(self, *args, **kwargs) -> None:
        self.refresh_search_columns()
        super().save(*args, **kwargs)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def refresh_search_columns(self) -> None:
        # Folding can lengthen a name ("ß" -> "ss", "æ" -> "ae"); past the column's size only the tail is lost.
        limit = self._meta.get_field("search_name").max_length
        self.search_name = normalize_search_text(f"{self.first_name} {self.last_name}")[:limit]
        self.search_account = self.account_number.strip().lower()


class Mailbox(models.Model):
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="mailboxes")
    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Messages from patients in its active conversations (for unread counts without scanning messages). An
    # archived conversation is not in the mailbox view, so its messages leave this count until it is reactivated.
    patient_message_count = models.PositiveBigIntegerField(default=0, db_default=0)
    # Sent to the patient when their message opens a conversation or reactivates an archived one; null: off.
    auto_reply = models.TextField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("name"), "practice", name="mailbox_unique_name_ci"),
            models.CheckConstraint(condition=~Q(name=""), name="mailbox_name_not_empty"),
        ]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class MailboxSubscription(models.Model):
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="subscriptions")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="mailbox_subscriptions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mailbox", "user"], name="subscription_unique")]
        indexes = [models.Index(fields=["user", "mailbox"], name="subscription_by_user")]


class Conversation(models.Model):
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="conversations")
    # PROTECT: a mailbox with conversations can never be deleted, whatever the code path.
    mailbox = models.ForeignKey(Mailbox, on_delete=models.PROTECT, related_name="conversations")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="conversations")
    status = models.CharField(max_length=10, choices=ConversationStatus.choices, default=ConversationStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Recency used for ordering: last message time, or creation time while empty.
    last_activity_at = models.DateTimeField()
    # The sequence of the newest message; the next send takes last_sequence + 1 under a row lock.
    last_sequence = models.PositiveIntegerField(default=0)
    # Messages from the patient so far (for unread counts without scanning messages).
    patient_message_count = models.PositiveIntegerField(default=0, db_default=0)
    # The patient's numbering: messages they can see (notes excluded), 1, 2, 3… without gaps.
    portal_last_sequence = models.PositiveIntegerField(default=0, db_default=0)
    assignee = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    priority = models.CharField(
        max_length=10, choices=ConversationPriority.choices, default=ConversationPriority.NORMAL, db_default="NORMAL"
    )
    # Oldest patient message not yet followed by a staff answer (null: answered). Kept by `core.waiting` only.
    waiting_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "patient"], name="conversation_unique_mailbox_patient"),
            models.CheckConstraint(condition=Q(status__in=ConversationStatus.values), name="conversation_status_valid"),
            models.CheckConstraint(
                condition=Q(priority__in=ConversationPriority.values), name="conversation_priority_valid"
            ),
        ]
        indexes = [
            models.Index(
                "mailbox", "status", F("last_activity_at").desc(), F("id").desc(), name="conversation_mailbox_recent"
            ),
            models.Index(fields=["patient"], name="conversation_by_patient"),
            # Stats (open, waiting, oldest waiting) and the "longest waiting" list read this index only.
            models.Index(fields=["mailbox", "status", "waiting_since", "id"], name="conversation_mailbox_waiting"),
            models.Index(fields=["mailbox", "status", "assignee", "id"], name="conversation_mailbox_assignee"),
        ]


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    sequence = models.PositiveIntegerField()
    direction = models.CharField(max_length=16, choices=MessageDirection.choices)
    # The message's place among those the patient can see (null for notes): the portal's `sequence`.
    portal_sequence = models.PositiveIntegerField(null=True, blank=True)
    body = models.TextField(blank=True)
    sent_at = models.DateTimeField()
    sender_user = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    sender_patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    client_message_id = models.CharField(max_length=100, null=True, blank=True)
    # The mailbox's auto-reply: no staff sender, signed with the mailbox's name as it was (`sender_label`).
    is_automatic = models.BooleanField(default=False, db_default=False)
    sender_label = models.CharField(max_length=100, blank=True, default="", db_default="")
    # Withdrawn (entered in error): kept whole for staff and the record; the patient sees only that it was.
    retracted_at = models.DateTimeField(null=True, blank=True)
    retracted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    retract_reason = models.CharField(max_length=500, blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "sequence"], name="message_unique_sequence"),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="message_sequence_positive"),
            models.CheckConstraint(
                condition=(
                    Q(
                        direction=MessageDirection.TO_PATIENT,
                        sender_user__isnull=False,
                        sender_patient__isnull=True,
                        is_automatic=False,
                    )
                    | Q(
                        direction=MessageDirection.TO_PATIENT,
                        sender_user__isnull=True,
                        sender_patient__isnull=True,
                        is_automatic=True,
                    )
                    | Q(
                        direction=MessageDirection.FROM_PATIENT,
                        sender_user__isnull=True,
                        sender_patient__isnull=False,
                        is_automatic=False,
                    )
                    | Q(
                        direction=MessageDirection.INTERNAL_NOTE,
                        sender_user__isnull=False,
                        sender_patient__isnull=True,
                        is_automatic=False,
                    )
                ),
                name="message_sender_matches_direction",
            ),
            models.CheckConstraint(
                condition=Q(retracted_at__isnull=True) | Q(direction=MessageDirection.TO_PATIENT),
                name="message_retracted_only_staff",
            ),
            models.UniqueConstraint(
                fields=["conversation", "portal_sequence"],
                condition=Q(portal_sequence__isnull=False),
                name="message_unique_portal_sequence",
            ),
            models.CheckConstraint(
                condition=Q(direction=MessageDirection.INTERNAL_NOTE, portal_sequence__isnull=True)
                | (
                    ~Q(direction=MessageDirection.INTERNAL_NOTE)
                    & Q(portal_sequence__isnull=False, portal_sequence__gte=1)
                ),
                name="message_note_not_in_portal",
            ),
            models.UniqueConstraint(
                fields=["conversation", "sender_user", "client_message_id"],
                condition=Q(client_message_id__isnull=False, sender_user__isnull=False),
                name="message_idempotent_staff",
            ),
            models.UniqueConstraint(
                fields=["conversation", "sender_patient", "client_message_id"],
                condition=Q(client_message_id__isnull=False, sender_patient__isnull=False),
                name="message_idempotent_patient",
            ),
        ]
        # Newest first: the order of message search (migration 0013 adds its full-text index per database).
        indexes = [models.Index(F("sent_at").desc(), F("id").desc(), name="message_recent")]

    @property
    def is_note(self) -> bool:
        return self.direction == MessageDirection.INTERNAL_NOTE

    @property
    def sender_name(self) -> str:
        if self.is_automatic:
            return self.sender_label
        if self.sender_user_id:
            return self.sender_user.display_name()
        return self.sender_patient.full_name


class AssignmentChange(models.Model):
    """One claim, assignment, reassignment or unassignment of a conversation, with who and why."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="assignment_changes")
    assignee = models.ForeignKey(User, null=True, on_delete=models.PROTECT, related_name="+")
    previous_assignee = models.ForeignKey(User, null=True, on_delete=models.PROTECT, related_name="+")
    changed_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["conversation", "at", "id"], name="assignment_by_conversation")]


class StaffResponse(models.Model):
    """A staff message that answered a waiting patient: how long they waited. Written by `core.waiting` with the
    answer; `Mailbox.stats` takes medians of `seconds` over a mailbox's rows since a date (index below)."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    mailbox_id = models.BigIntegerField()
    message = models.OneToOneField("Message", on_delete=models.CASCADE, related_name="+")
    waited_from = models.DateTimeField()
    answered_at = models.DateTimeField()
    seconds = models.FloatField()
    # The conversation's first staff answer to the patient.
    is_first = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["mailbox_id", "answered_at"], name="response_by_mailbox_time")]


class QuickReply(models.Model):
    """A practice's canned text that staff insert into the composer; mailbox admins manage them."""

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="quick_replies")
    title = models.CharField(max_length=100)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("title"), "practice", name="quickreply_unique_title_ci"),
            models.CheckConstraint(condition=~Q(title=""), name="quickreply_title_not_empty"),
        ]
        ordering = ["title", "id"]


class Attachment(models.Model):
    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, null=True, on_delete=models.CASCADE, related_name="attachments")
    storage_name = models.CharField(max_length=255, unique=True)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    @property
    def download_path(self) -> str:
        """The authenticated download URL path (graph/download_urls.py), staff access from the chart rules."""
        return self.download_path_for(None)

    def download_path_for(self, via: str | None) -> str:
        """The same path with `?via=MAILBOX|CHART_SUMMARY`: the place the url was handed out, recorded in the audit
        trail (the url opens for everyone the message is visible to, from any place)."""
        path = reverse("attachment-download", kwargs={"attachment_id": self.pk})
        return f"{path}?{urlencode({'via': via})}" if via else path


class ReadState(models.Model):
    """How far a user has read a conversation. Unread = conversation.patient_message_count - read_patient_count,
    and per mailbox = mailbox.patient_message_count - the sum of the user's read_patient_count over the active
    conversations there: no scan of messages, however long the threads."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="read_states")
    # Denormalized from the conversation (which never changes mailbox) for the per-mailbox sum. A plain id,
    # not a foreign key: inserting a row must not take a share lock on the mailbox row, which a patient's send
    # locks before the conversation (the opposite order would deadlock with a staff send).
    mailbox_id = models.BigIntegerField()
    last_read_sequence = models.PositiveIntegerField(default=0)
    read_patient_count = models.PositiveIntegerField(default=0, db_default=0)
    # Denormalized conversation status (kept by archive and reactivation): the per-mailbox sum, like the
    # mailbox's counter, covers active conversations only.
    conversation_active = models.BooleanField(default=True, db_default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "conversation"], name="readstate_unique")]
        indexes = [models.Index(fields=["user", "mailbox_id"], name="readstate_by_user_mailbox")]


class AuditAction(models.TextChoices):
    CREATE = "CREATE"
    READ = "READ"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    EXECUTE = "EXECUTE"


class AuditEvent(models.Model):
    """Append-only trail in the spirit of FHIR AuditEvent: who, what action, on what, from where, outcome."""

    # Every read writes one of these rows, so its references are checked by Django, not by the database: PROTECT
    # still refuses, in the ORM, to delete what a trail names, but a read's commit takes no key-share lock on
    # the practice, the account and the patient (four deferred checks, each a lock that waits behind any FOR
    # UPDATE of those rows). The practice and patient are found through `audit_by_practice` and
    # `audit_by_patient`. Measured on a search page: the audit INSERT 3.3 -> 2.3 ms (migration 0018).
    practice = models.ForeignKey(
        Practice, null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    actor_user = models.ForeignKey(User, null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    actor_patient = models.ForeignKey(
        Patient, null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    action = models.CharField(max_length=10, choices=AuditAction.choices)
    operation = models.CharField(max_length=64)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    patient = models.ForeignKey(
        Patient, null=True, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    query = models.CharField(max_length=200, blank=True)
    via = models.CharField(max_length=16, choices=AccessSource.choices, blank=True)
    ip = models.GenericIPAddressField(null=True)
    outcome = models.CharField(max_length=40, default="SUCCESS")
    request_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["practice", "-id"], name="audit_by_practice"),
            models.Index(fields=["patient", "-id"], name="audit_by_patient"),
        ]

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise RuntimeError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("Audit events are append-only.")


class EventKind(models.TextChoices):
    MESSAGE_ADDED = "MESSAGE_ADDED"
    CONVERSATION_STARTED = "CONVERSATION_STARTED"
    CONVERSATION_ARCHIVED = "CONVERSATION_ARCHIVED"
    CONVERSATION_REACTIVATED = "CONVERSATION_REACTIVATED"
    CONVERSATION_READ = "CONVERSATION_READ"
    MAILBOX_CREATED = "MAILBOX_CREATED"
    MAILBOX_RENAMED = "MAILBOX_RENAMED"
    MAILBOX_DEACTIVATED = "MAILBOX_DEACTIVATED"
    MAILBOX_ACTIVATED = "MAILBOX_ACTIVATED"
    MAILBOX_DELETED = "MAILBOX_DELETED"
    SUBSCRIPTIONS_CHANGED = "SUBSCRIPTIONS_CHANGED"
    # Who may see what changed: a practice setting, a role, a permission, a membership, an account, a token or a
    # browser session (`data.reason`). Live streams decide their access again; no object is attached.
    ACCESS_CHANGED = "ACCESS_CHANGED"
    MAILBOX_AUTO_REPLY_CHANGED = "MAILBOX_AUTO_REPLY_CHANGED"
    MESSAGE_RETRACTED = "MESSAGE_RETRACTED"
    # Working the pool (staff only: never in the portal's log).
    NOTE_ADDED = "NOTE_ADDED"
    CONVERSATION_ASSIGNED = "CONVERSATION_ASSIGNED"
    CONVERSATION_PRIORITY_CHANGED = "CONVERSATION_PRIORITY_CHANGED"
    QUICK_REPLIES_CHANGED = "QUICK_REPLIES_CHANGED"


class Event(models.Model):
    """Outbox row written in the same transaction as the change; its id is the resume cursor."""

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    # Plain ids, not foreign keys: the event must outlive a deleted mailbox.
    mailbox_id = models.BigIntegerField(null=True)
    conversation_id = models.BigIntegerField(null=True)
    patient_id = models.BigIntegerField(null=True)
    message_id = models.BigIntegerField(null=True)
    # Users whose own view changed (subscriptions, read state).
    user_ids = models.JSONField(default=list, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["practice", "id"], name="event_by_practice"),
            models.Index(fields=["conversation_id", "id"], name="event_by_conversation"),
            models.Index(fields=["patient_id", "id"], name="event_by_patient"),
        ]


class NoticeStatus(models.TextChoices):
    PENDING = "PENDING"
    # Handed to the mail server by a worker that may have died since (`claimed_at` says when).
    SENDING = "SENDING"
    SENT = "SENT"
    SKIPPED = "SKIPPED"


class EmailNotice(models.Model):
    """One row per staff message the notice worker has read from the event log: whether and when the patient was
    told by email. Unique per message, so a message is never noticed twice (`core.notices`)."""

    practice = models.ForeignKey(Practice, on_delete=models.CASCADE, related_name="+")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="email_notice")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    # The message's time: the cooldown is counted between messages, however late the worker reads them.
    message_sent_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=NoticeStatus.choices, default=NoticeStatus.PENDING)
    # Why no mail goes out: COOLDOWN, NO_EMAIL, OPTED_OUT, AUTOMATIC, WITHDRAWN, STALE (past NOTIFY_MAX_AGE_HOURS).
    skip_reason = models.CharField(max_length=20, blank=True)
    # Sends the mail server answered (refused or accepted); a send cut off by a stopped worker is not counted.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True)
    claimed_at = models.DateTimeField(null=True)
    sent_at = models.DateTimeField(null=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=NoticeStatus.values), name="notice_status_valid"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notice_due"),
            models.Index(fields=["conversation", "-message_sent_at"], name="notice_by_conversation"),
        ]


class NoticeCursor(models.Model):
    """How far the notice worker has read a practice's event log. Per practice because event ids are committed
    in order within a practice only (`core.events._serialize_practice_log`)."""

    practice = models.OneToOneField(Practice, on_delete=models.CASCADE, related_name="+")
    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 is stored. Belongs to a staff user or to a patient."""

    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens")
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, patient__isnull=True) | Q(user__isnull=True, patient__isnull=False),
                name="token_single_owner",
            )
        ]
