"""The staff and patient directory import of SPEC §4: read and validate a whole file, then write it at once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from core.directory.apply import ImportSummary, Tally, apply_directory
from core.directory.jsonlines import loads_with_lines
from core.directory.records import PracticeRecord, Problem, parse_directory

__all__ = [
    "DirectoryError",
    "ImportSummary",
    "Tally",
    "apply_directory",
    "import_directory",
    "read_directory",
    "record_count",
]

MAX_PROBLEMS_SHOWN = 20


class DirectoryError(Exception):
    """The file cannot be imported; the message lists `path:line: problem` lines."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [f"{path}:{p.line}: {p.message}" for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"… and {len(problems) - MAX_PROBLEMS_SHOWN} more problems; nothing was imported.")
        super().__init__("\n".join(lines))


def read_directory(path: str | Path) -> list[PracticeRecord]:
    """Reads and validates the whole file; raises `DirectoryError` listing every problem by line."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryError(name, [Problem(1, f"cannot read the file: {exc}")]) from exc
    try:
        data = loads_with_lines(text)
    except json.JSONDecodeError as exc:
        raise DirectoryError(name, [Problem(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")]) from exc
    practices, problems = parse_directory(data)
    if problems:
        raise DirectoryError(name, problems)
    return practices


def import_directory(path: str | Path, *, advance: Callable[[int], None] = lambda n: None) -> ImportSummary:
    """Validates everything, then writes everything in one transaction (or nothing)."""
    practices = read_directory(path)
    return apply_directory(practices, source=Path(path).name, advance=advance)


def record_count(practices: list[PracticeRecord]) -> int:
    return sum(len(p.staff) + len(p.patients) for p in practices)
