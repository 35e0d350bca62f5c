"""Text normalization shared by storage (search columns) and queries (search input)."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")
_APOSTROPHES = re.compile(r"['’ʼ`´]")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalize_search_text(value: str) -> str:
    """Lowercase, strip accents, drop apostrophes, split on other punctuation, collapse whitespace:
    "  María  GARCÍA-López " -> "maria garcia lopez", "O'Brien" -> "obrien"."""
    decomposed = unicodedata.normalize("NFKD", value)
    without_marks = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = _PUNCTUATION.sub(" ", _APOSTROPHES.sub("", without_marks.casefold()))
    return _SPACES.sub(" ", words).strip()
