"""Every state change of the domain, one function each: authorize, validate, write, audit, emit — atomically."""

from core.actions.conversations import (
    archive_conversation,
    mark_conversation_read,
    retract_message,
    send_auto_reply,
    send_patient_message,
    send_staff_message,
    start_conversation,
    unarchive_conversation,
)
from core.actions.mailboxes import (
    activate_mailbox,
    create_mailbox,
    deactivate_mailbox,
    delete_mailbox,
    rename_mailbox,
    set_mailbox_auto_reply,
    set_mailbox_subscribers,
    set_user_mailbox_access,
    subscribe_to_mailbox,
    unsubscribe_from_mailbox,
)
from core.actions.pool import add_internal_note, assign_conversation, set_conversation_priority
from core.actions.portal import set_portal_notifications
from core.actions.practice import grant_permission, revoke_permission, set_practice_setting
from core.actions.quick_replies import create_quick_reply, delete_quick_reply, update_quick_reply

__all__ = [
    "activate_mailbox",
    "add_internal_note",
    "archive_conversation",
    "assign_conversation",
    "create_mailbox",
    "create_quick_reply",
    "deactivate_mailbox",
    "delete_mailbox",
    "delete_quick_reply",
    "grant_permission",
    "mark_conversation_read",
    "rename_mailbox",
    "retract_message",
    "revoke_permission",
    "send_auto_reply",
    "send_patient_message",
    "send_staff_message",
    "set_conversation_priority",
    "set_mailbox_auto_reply",
    "set_mailbox_subscribers",
    "set_portal_notifications",
    "set_practice_setting",
    "set_user_mailbox_access",
    "start_conversation",
    "subscribe_to_mailbox",
    "unarchive_conversation",
    "unsubscribe_from_mailbox",
    "update_quick_reply",
]
