"""Text normalization shared by storage (search columns) and queries (search input)."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from anyascii import anyascii

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


def normalize_search_text(value: str) -> str:
    """Lowercase, strip accents, fold the Latin letters NFKD keeps whole, drop apostrophes, split on other
    punctuation, collapse whitespace: "  María  GARCÍA-López " -> "maria garcia lopez", "O'Brien" -> "obrien",
    "Łukasz Øster" -> "lukasz oster"."""
    decomposed = unicodedata.normalize("NFKD", value)
    without_marks = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    folded = "".join(_fold_latin(ch) for ch in without_marks.casefold())
    words = _PUNCTUATION.sub(" ", _APOSTROPHES.sub("", folded))
    return _SPACES.sub(" ", words).strip()
