"""Text normalization shared by storage (search columns) and queries (search input)."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from anyascii import anyascii

from core.errors import DomainError, ErrorCode

_SPACES = re.compile(r"\s+")
_APOSTROPHES = re.compile(r"['’ʼ`´]")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


@cache
def _fold_latin(ch: str) -> str:
    # NFKD leaves letters with a stroke, ligatures and the like whole (ł, ø, đ, ħ, æ, œ, þ, ı): a Latin letter still
    # outside ASCII is transliterated ("łukasz" -> "lukasz"). Other scripts are kept as typed: transliterating
    # "Иван" or "张伟" would change which prefixes of those names match.
    if ch.isascii() or not unicodedata.name(ch, "").startswith("LATIN "):
        return ch
    return anyascii(ch).casefold() or ch


def fold_text(value: str) -> str:
    """Lowercase, strip accents and fold the Latin letters NFKD keeps whole, leaving punctuation and spacing as
    they are: "María Łukasz O'Brien" -> "maria lukasz o'brien"."""
    decomposed = unicodedata.normalize("NFKD", value)
    without_marks = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(_fold_latin(ch) for ch in without_marks.casefold())


def normalize_search_text(value: str) -> str:
    """Lowercase, strip accents, fold the Latin letters NFKD keeps whole, drop apostrophes, split on other
    punctuation, collapse whitespace: "  María  GARCÍA-López " -> "maria garcia lopez", "O'Brien" -> "obrien",
    "Łukasz Øster" -> "lukasz oster"."""
    words = _PUNCTUATION.sub(" ", _APOSTROPHES.sub("", fold_text(value)))
    return _SPACES.sub(" ", words).strip()


_WORD = re.compile(r"[^\W_]+")


def search_words(value: str) -> list[str]:
    """The words of a message text as full-text search indexes them: folded like `fold_text`, split on every
    character that is not a letter or digit (apostrophes and hyphens too, as both databases' tokenizers do):
    "O'Brien's follow-up, $25.00" -> ["o", "brien", "s", "follow", "up", "25", "00"]."""
    return _WORD.findall(fold_text(value))


# Lone surrogates decode from JSON ("\udc00") but cannot be encoded as UTF-8, and PostgreSQL text cannot hold
# NUL: either would fail only when written, as a server error (and SQLite would store them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def has_unstorable_characters(value: str) -> bool:
    """True when `value` holds a NUL character or a lone surrogate, which no database column may store."""
    return _UNSTORABLE.search(value) is not None


def unstorable_text_message(field: str) -> str:
    return (
        f"{field} contains a NUL character or a broken Unicode character (a lone surrogate); remove it and send "
        "the text again."
    )


def require_storable_text(value: str | None, field: str) -> None:
    """The GraphQL layer refuses these for every argument; this covers callers that bypass it (scripts, commands)."""
    if value is not None and has_unstorable_characters(value):
        raise DomainError(ErrorCode.VALIDATION_ERROR, unstorable_text_message(field), field=field)


def is_format_character(ch: str) -> bool:
    """Invisible characters such as zero-width spaces, joiners and byte-order marks (Unicode category Cf)."""
    return unicodedata.category(ch) == "Cf"


def strip_invisible(value: str) -> str:
    """Trims whitespace and format characters from both ends, so a text that only shows as blank is blank."""
    start, end = 0, len(value)
    while start < end and (value[start].isspace() or is_format_character(value[start])):
        start += 1
    while end > start and (value[end - 1].isspace() or is_format_character(value[end - 1])):
        end -= 1
    return value[start:end]


def without_format_characters(value: str) -> str:
    return "".join(ch for ch in value if not is_format_character(ch))
