"""Patient search (SPEC §2): name-token prefixes in any order, date of birth, or account number."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime

from django.conf import settings
from django.db import connection
from django.db.models import Q

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


def _like_prefix(token: str) -> str:
    return token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# PostgreSQL: the words the driving token is a prefix of, one index probe each (a loose index scan); per word, a
# page of its patients in result order; then the best page of all words and of the account-number prefix.
# One token (migration 0007): the token index lists each word's patients in result order, the walk stops after
# a page. Two or more (migration 0008): per word, the patients whose other word starts with the second token are
# one range of the pair index (not a walk past every patient sorted before them), and only those are sorted; a
# patient can list several such pairs, hence DISTINCT. Further tokens are checked on the index entry.
_NAME_SEARCH = """
WITH RECURSIVE words(token) AS (
    SELECT min({word}) FROM {table} WHERE practice_id = %(practice)s AND {word} LIKE %(driver)s
    UNION ALL
    SELECT (
        SELECT min(t.{word}) FROM {table} t
        WHERE t.practice_id = %(practice)s AND t.{word} > w.token AND t.{word} LIKE %(driver)s
    )
    FROM words w WHERE w.token IS NOT NULL
), hits AS (
    SELECT m.last_name, m.first_name, m.patient_id
    FROM words w
    CROSS JOIN LATERAL (
        SELECT {distinct}t.last_name, t.first_name, t.patient_id FROM {table} t
        WHERE t.practice_id = %(practice)s AND t.{word} = w.token{others}
        ORDER BY t.last_name, t.first_name, t.patient_id
        LIMIT %(limit)s
    ) m
    WHERE w.token IS NOT NULL
    UNION
    (
        SELECT p.last_name, p.first_name, p.id FROM core_patient p
        WHERE p.practice_id = %(practice)s AND p.search_account LIKE %(account)s
        ORDER BY p.last_name, p.first_name, p.id
        LIMIT %(limit)s
    )
), page AS (
    SELECT * FROM hits ORDER BY last_name, first_name, patient_id LIMIT %(limit)s
)
SELECT p.* FROM page JOIN core_patient p ON p.id = page.patient_id AND p.practice_id = %(practice)s
ORDER BY page.last_name, page.first_name, page.patient_id
"""
_BY_TOKEN = {"table": "core_patient_search_token", "word": "token", "distinct": ""}
_BY_PAIR = {"table": "core_patient_search_pair", "word": "word", "distinct": "DISTINCT "}


def _search_by_tokens(practice_id: int, tokens: list[str], account_prefix: str, limit: int) -> Iterable[Patient]:
    # A token that is a prefix of another is met by the same word: only the others need a word each. The longest
    # usually matches the fewest words: it drives; with two or more, the next longest is sought in the pair index.
    needed = sorted(
        (t for t in dict.fromkeys(tokens) if not any(o != t and o.startswith(t) for o in tokens)), key=len, reverse=True
    )
    driver, rest = needed[0], needed[1:]
    params: dict[str, object] = {
        "practice": practice_id,
        "driver": _like_prefix(driver),
        "account": _like_prefix(account_prefix),
        "limit": limit,
    }
    conditions = []
    if rest:
        params["second"] = _like_prefix(rest[0])
        conditions.append("t.other LIKE %(second)s")
    for i, token in enumerate(rest[1:]):
        params[f"start{i}"], params[f"later{i}"] = _like_prefix(token), "% " + _like_prefix(token)
        conditions.append(f"(t.search_name LIKE %(start{i})s OR t.search_name LIKE %(later{i})s)")
    tables = _BY_PAIR if rest else _BY_TOKEN
    sql = _NAME_SEARCH.format(others="".join(f" AND {c}" for c in conditions), **tables)
    return Patient.objects.raw(sql, params)


def search_patients(practice_id: int, query: str, limit: int = 20) -> Iterable[Patient]:
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
    if connection.vendor == "postgresql":
        return _search_by_tokens(practice_id, tokens, text.lower(), limit)
    by_name = Q()
    for token in tokens:
        by_name &= _name_token_filter(token)
    return patients.filter(by_account | by_name).order_by("last_name", "first_name", "pk")[:limit]
