"""The API's enums (SPEC §3): most mirror a model's choices, named as the schema shows them."""

from __future__ import annotations

import enum

import strawberry

from core import models


@strawberry.enum
class MailboxStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    DEACTIVATED = "DEACTIVATED"


ConversationStatus = strawberry.enum(models.ConversationStatus, name="ConversationStatus")
MessageDirection = strawberry.enum(models.MessageDirection, name="MessageDirection")
PracticePermission = strawberry.enum(models.PracticePermission, name="PracticePermission")
Role = strawberry.enum(models.Role, name="Role")
AuditAction = strawberry.enum(models.AuditAction, name="AuditAction")
EventKind = strawberry.enum(models.EventKind, name="EventKind")
ConversationPriority = strawberry.enum(models.ConversationPriority, name="ConversationPriority")


@strawberry.enum(description="How a mailbox's conversation list is ordered.")
class ConversationOrder(enum.Enum):
    RECENT_ACTIVITY = "RECENT_ACTIVITY"
    URGENT_FIRST = "URGENT_FIRST"
    LONGEST_WAITING = "LONGEST_WAITING"


@strawberry.enum
class AccessSource(enum.Enum):
    MAILBOX = "MAILBOX"
    CHART_SUMMARY = "CHART_SUMMARY"
