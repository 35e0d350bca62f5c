"""The schema: queries, mutations, subscriptions, and the extensions that guard every operation."""

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

from core.errors import DomainError
from graph import fast_fields
from graph.audit_refusals import AuditRefusals
from graph.cost import MaxCostLimiter
from graph.errors import DomainErrors
from graph.limits import IntrospectionSwitch, MaxFieldsLimiter
from graph.live_exec import LiveExecutor
from graph.mutations import Mutation
from graph.observe import ObserveOperation
from graph.queries import Query
from graph.text_arguments import UnstorableTextGuard

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 4000
MAX_FIELDS = 500


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
        """Refusals are expected answers, not server faults: log only the unexpected (masked) ones."""
        unexpected = [e for e in errors if not _is_expected(e)]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def _is_expected(error) -> bool:
    original = getattr(error, "original_error", None)
    return original is None or isinstance(original, DomainError)


schema = MailboxSchema(
    query=Query,
    mutation=Mutation,
    subscription=_subscription_type(),
    extensions=[*_extensions(), *_stream_extensions()],
    # Subscription events execute on the live database thread, once per cohort (graph.live_exec).
    execution_context_class=LiveExecutor,
)
fast_fields.install(schema._schema)
