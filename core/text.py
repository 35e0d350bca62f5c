"""Text normalization shared by storage (search columns) and queries (search input)."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def normalize_search_text(value: str) -> str:
    """Lowercase, strip accents, collapse whitespace: "  María  GARCÍA " -> "maria garcia"."""
    decomposed = unicodedata.normalize("NFKD", value)
    without_marks = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", without_marks.casefold()).strip()
