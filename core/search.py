"""Patient search (SPEC §2): name-token prefixes in any order, date of birth, or account number."""

from __future__ import annotations

import re
from datetime import date, datetime

from django.conf import settings
from django.db.models import Q, QuerySet

from core.models import Patient
from core.text import normalize_search_text

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_US_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")


def parse_date_of_birth(text: str) -> date | None:
    text = text.strip()
    for pattern, fmt in ((_ISO_DATE, "%Y-%m-%d"), (_US_DATE, "%m/%d/%Y")):
        if pattern.match(text):
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                return None
    return None


def _name_token_filter(token: str) -> Q:
    # search_name is "first last" normalized: a token matches the start of the string or of a later word.
    return Q(search_name__startswith=token) | Q(search_name__contains=f" {token}")


def search_patients(practice_id: int, query: str, limit: int = 20) -> QuerySet[Patient]:
    limit = max(1, min(limit, settings.MAILBOX["SEARCH_MAX_RESULTS"]))
    text = query.strip()
    patients = Patient.objects.filter(practice_id=practice_id)
    if not text:
        return patients.none()
    dob = parse_date_of_birth(text)
    if dob is not None:
        return patients.filter(date_of_birth=dob).order_by("last_name", "first_name", "pk")[:limit]
    by_account = Q(search_account__startswith=text.lower())
    tokens = normalize_search_text(text).split()
    if not tokens:  # only punctuation: it can still be an account number prefix, never every name
        return patients.filter(by_account).order_by("last_name", "first_name", "pk")[:limit]
    by_name = Q()
    for token in tokens:
        by_name &= _name_token_filter(token)
    return patients.filter(by_account | by_name).order_by("last_name", "first_name", "pk")[:limit]
