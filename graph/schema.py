"""The schema: every root field in the order the SDL lists them (each resolver lives with its domain), and the
extensions that guard every operation."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule

from graph import fast_fields
from graph.audit import schema as audit_fields
from graph.audit_refusals import AuditRefusals
from graph.conversations import schema as conversation_fields
from graph.cost import MaxCostLimiter
from graph.errors import DomainErrors
from graph.limits import IntrospectionSwitch, MaxFieldsLimiter
from graph.live_exec import LiveExecutor
from graph.mailboxes import schema as mailbox_fields
from graph.observe import ObserveOperation
from graph.patients import schema as patient_fields
from graph.practice import schema as practice_fields
from graph.text_arguments import UnstorableTextGuard

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 4000
MAX_FIELDS = 500


@strawberry.type
class Query:
    me = practice_fields.me
    practices = practice_fields.practices
    mailboxes = mailbox_fields.mailboxes
    mailbox = mailbox_fields.mailbox
    conversation = conversation_fields.conversation
    search_patients = patient_fields.search_patients
    search_messages = conversation_fields.search_messages
    patient = patient_fields.patient
    user_mailbox_access = mailbox_fields.user_mailbox_access
    practice_users = practice_fields.practice_users
    quick_replies = conversation_fields.quick_replies
    practice_settings = practice_fields.practice_settings
    audit_events = audit_fields.audit_events
    meaningful_use = practice_fields.meaningful_use
    portal_mailboxes = mailbox_fields.portal_mailboxes
    portal_notifications = patient_fields.portal_notifications
    portal_conversations = conversation_fields.portal_conversations


@strawberry.type
class Mutation:
    create_mailbox = mailbox_fields.create_mailbox
    rename_mailbox = mailbox_fields.rename_mailbox
    deactivate_mailbox = mailbox_fields.deactivate_mailbox
    activate_mailbox = mailbox_fields.activate_mailbox
    delete_mailbox = mailbox_fields.delete_mailbox
    set_mailbox_auto_reply = mailbox_fields.set_mailbox_auto_reply
    subscribe_to_mailbox = mailbox_fields.subscribe_to_mailbox
    unsubscribe_from_mailbox = mailbox_fields.unsubscribe_from_mailbox
    set_mailbox_subscribers = mailbox_fields.set_mailbox_subscribers
    set_user_mailbox_access = mailbox_fields.set_user_mailbox_access
    grant_permission = practice_fields.grant_permission
    revoke_permission = practice_fields.revoke_permission
    set_practice_setting = practice_fields.set_practice_setting
    start_conversation = conversation_fields.start_conversation
    archive_conversation = conversation_fields.archive_conversation
    unarchive_conversation = conversation_fields.unarchive_conversation
    mark_conversation_read = conversation_fields.mark_conversation_read
    send_message = conversation_fields.send_message
    retract_message = conversation_fields.retract_message
    send_portal_message = conversation_fields.send_portal_message
    set_portal_notifications = patient_fields.set_portal_notifications
    add_internal_note = conversation_fields.add_internal_note
    assign_conversation = conversation_fields.assign_conversation
    set_conversation_priority = conversation_fields.set_conversation_priority
    create_quick_reply = conversation_fields.create_quick_reply
    update_quick_reply = conversation_fields.update_quick_reply
    delete_quick_reply = conversation_fields.delete_quick_reply


# strawberry's QueryDepthLimiter / MaxAliasesLimiter build a new rule class per instance, i.e. per request, and
# ValidationCache keys on the rule classes: with them, every request was validated afresh (4 ms of a search).
# The same rules, built once.
_LIMIT_RULES = (max_depth_rule(MAX_DEPTH, None, None), max_aliases_rule(MAX_ALIASES))


def _extensions() -> list:
    extensions = [
        ObserveOperation,  # first: exits last, sees the answered error codes
        DomainErrors,
        AuditRefusals,  # after DomainErrors: exits first, while the original refusals are still there
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: MaxFieldsLimiter(max_fields=MAX_FIELDS),
        IntrospectionSwitch,
        MaxCostLimiter,
        lambda: AddValidationRules(list(_LIMIT_RULES)),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        UnstorableTextGuard,
        # No DjangoOptimizerExtension: every read loads its rows whole and batches nested lists itself (query
        # counts are pinned by tests), and the optimizer's per-field hook cost about 5% of a large page.
    ]
    return extensions


def _subscription_type():
    try:
        from graph.subscriptions import Subscription
    except ImportError:
        return None
    return Subscription


def _stream_extensions() -> list:
    """Each result a subscription streams gets the same error shape as an HTTP answer."""
    from graph.subscriptions import StreamedDomainErrors

    return [StreamedDomainErrors] if _subscription_type() is not None else []


class MailboxSchema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """Logs nothing: refusals and refused documents are expected answers, not server faults (a variable that
        does not coerce was logged with a traceback for every client typo), and an unexpected error is logged
        once, by `graph.errors.format_error`, under the request id its masked answer quotes. (Strawberry's own
        record of it, under `strawberry.execution`, repeated the traceback without that id.)"""


schema = MailboxSchema(
    query=Query,
    mutation=Mutation,
    subscription=_subscription_type(),
    extensions=[*_extensions(), *_stream_extensions()],
    # Subscription events execute on the live database thread, once per cohort (graph.live_exec).
    execution_context_class=LiveExecutor,
)
fast_fields.install(schema._schema)
