"""`manage.py import_directory FILE.json`: practices, staff and patients from one file (SPEC §4)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from core.directory import DirectoryError, ImportSummary, apply_directory, read_directory, record_count


class Command(BaseCommand):
    help = (
        "Load practices, settings, staff and patients from a JSON directory file. Idempotent: records in the "
        "file are created or updated to match it; records not in the file are left alone. The whole file is "
        "validated first and written in one transaction."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the directory JSON file")
        parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")

    def handle(self, *args, file: str, quiet: bool, **options) -> None:
        quiet = quiet or options["verbosity"] == 0
        try:
            practices = read_directory(file)
        except DirectoryError as exc:
            raise CommandError(str(exc)) from exc
        with tqdm(
            total=record_count(practices),
            desc="importing",
            unit=" records",
            file=sys.stderr,
            disable=quiet or not sys.stderr.isatty(),
            leave=False,
        ) as bar:
            summary = apply_directory(practices, source=Path(file).name, advance=bar.update)
        if not quiet:
            self._print_summary(file, summary)

    def _print_summary(self, file: str, summary: ImportSummary) -> None:
        self.stdout.write(f"Imported {file}:")
        for name, tally in summary.rows():
            self.stdout.write(
                f"  {name:<12} {tally.created:>7} created {tally.updated:>7} updated {tally.unchanged:>7} unchanged"
            )
