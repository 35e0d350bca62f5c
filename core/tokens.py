"""API tokens: random, shown once, stored as SHA-256, with expiry, idle timeout and revocation."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import ratelimit, refusals
from core.context import current_request
from core.errors import DomainError, ErrorCode
from core.events import emit_account_access_changed
from core.models import ApiToken, Patient, User
from core.prepared import Prepared

TOKEN_PREFIX = "pmm_"
# Refresh last_used_at at most this often, so a busy token does not write on every request.
_TOUCH_EVERY = timedelta(seconds=60)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class TokenOwner:
    token_id: int | None  # None for a browser session
    user: User | None
    patient: Patient | None


def issue_token(*, user: User | None = None, patient: Patient | None = None, ttl: timedelta | None = None) -> str:
    if (user is None) == (patient is None):
        raise ValueError("A token belongs to exactly one user or one patient.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ttl = ttl or timedelta(hours=settings.MAILBOX["TOKEN_TTL_HOURS"])
    ApiToken.objects.create(
        key_hash=hash_token(raw), prefix=raw[:12], user=user, patient=patient, expires_at=timezone.now() + ttl
    )
    return raw


# One answer for every unusable token: telling expired, idle, revoked, disabled and unknown apart would tell a
# caller holding someone else's token whether it was ever real. The audit row keeps the reason.
INVALID_TOKEN_MESSAGE = (
    "This token cannot be used: it may be unknown, expired, revoked or logged off after inactivity. "
    "Ask for a new token (manage.py issue_token)."
)


# The lookup every request makes, built and compiled once (core.prepared).
_TOKEN = Prepared(
    lambda prepared: (
        ApiToken.objects.select_related("user").filter(key_hash=prepared.value("key_hash", str)).order_by("pk")[:1]
    )
)


def authenticate_token(raw: str) -> TokenOwner:
    """The token's owner, or UNAUTHENTICATED (audited with the caller's IP and the reason, no actor).

    Failures are counted per caller address and per presented token prefix. A valid token always passes: tokens
    carry 256 random bits, so the limits are there to stop floods of bad tokens (and their audit rows), and
    refusing valid ones would let one caller behind a shared address, or one who knows a token's prefix, lock
    other people out. Past a limit a bad token is refused with RATE_LIMITED, neither counted nor audited."""
    raw = raw.strip()
    ip = current_request().ip or "unknown"
    # Staff tokens are most requests: join only the user (the patient joins made this query 1.9 ms instead of
    # 1.1); a patient token loads its patient with a second query.
    [token] = _TOKEN.rows(values={"key_hash": hash_token(raw)}) or [None]
    if token is not None and token.patient_id is not None:
        token.patient = Patient.objects.select_related("practice").get(pk=token.patient_id)
    now = timezone.now()
    reason = _refusal_reason(token, now)
    if reason is None:
        if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return TokenOwner(token_id=token.pk, user=token.user, patient=token.patient)
    raise _failed(token, reason, ip, raw)


def _refusal_reason(token: ApiToken | None, now: datetime) -> str | None:
    """Why this token cannot be used (for the audit trail only), or None when it can."""
    if token is None:
        return "unknown"
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    idle_minutes = settings.MAILBOX["TOKEN_IDLE_MINUTES"]
    if idle_minutes and now - (token.last_used_at or token.created_at) > timedelta(minutes=idle_minutes):
        return "idle"
    if token.user is not None and not token.user.is_active:
        return "disabled"
    return None


def _failure_counters(ip: str, raw: str) -> tuple[str, str]:
    # The prefix (as long as the one stored with each token) is caller input: hashed, it makes a well-formed cache
    # key whatever was sent.
    return f"ip:{ip}", f"prefix:{hash_token(raw[:12])[:32]}"


def _failed(token: ApiToken | None, reason: str, ip: str, raw: str) -> DomainError:
    counters = _failure_counters(ip, raw)
    for who in counters:
        ratelimit.check(ratelimit.TOKEN_FAILURES, who)
    for who in counters:
        ratelimit.record_failure(ratelimit.TOKEN_FAILURES, who)
    refusals.record_token_failure(
        reason=reason,
        token_id=token.pk if token is not None else None,
        user=token.user if token is not None else None,
        patient=token.patient if token is not None else None,
    )
    return DomainError(ErrorCode.UNAUTHENTICATED, INVALID_TOKEN_MESSAGE)


def token_is_valid(token_id: int) -> bool:
    """For long-lived connections: is the token they opened with still usable?"""
    return token_id in valid_token_ids([token_id])


def valid_token_ids(token_ids: Iterable[int]) -> set[int]:
    """Which of these tokens are still usable (not revoked, not expired, not idle too long, the account not
    switched off): one query."""
    now = timezone.now()
    tokens = ApiToken.objects.filter(pk__in=set(token_ids), revoked_at__isnull=True, expires_at__gt=now).filter(
        Q(user__isnull=True) | Q(user__is_active=True)
    )
    idle_minutes = settings.MAILBOX["TOKEN_IDLE_MINUTES"]
    valid = set()
    for pk, last_used_at, created_at in tokens.values_list("pk", "last_used_at", "created_at"):
        if not (idle_minutes and now - (last_used_at or created_at) > timedelta(minutes=idle_minutes)):
            valid.add(pk)
    return valid


def revoke_tokens(*, user: User | None = None, patient: Patient | None = None) -> int:
    if (user is None) == (patient is None):
        # Without this, revoke_tokens() would match patient=None: every staff token at once.
        raise ValueError("Revoke the tokens of exactly one user or one patient.")
    tokens = ApiToken.objects.filter(revoked_at__isnull=True)
    tokens = tokens.filter(user=user) if user is not None else tokens.filter(patient=patient)
    with transaction.atomic():
        revoked = tokens.update(revoked_at=timezone.now())
        if revoked:  # open sockets of these tokens close at their next event (or the periodic re-check)
            emit_account_access_changed(reason="token", user=user, patient=patient)
    return revoked


def valid_session_keys(keys: Iterable[str]) -> set[str]:
    """The browser sessions among `keys` that are still signed in."""
    from django.contrib.sessions.models import Session

    return set(
        Session.objects.filter(session_key__in=set(keys), expire_date__gt=timezone.now()).values_list(
            "session_key", flat=True
        )
    )
