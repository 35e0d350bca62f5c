"""Removes attachment files and rows that never became part of a message (crash, rollback, refused send)."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.attachment_cleanup import cleanup_attachments


class Command(BaseCommand):
    help = (
        "Remove stored attachment files that have no committed Attachment row, and Attachment rows without a "
        "message, once they are older than --older-than-minutes (so sends in progress are left alone)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-minutes", type=int, default=60, help="Only touch files and rows at least this old (60)."
        )
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed; remove nothing.")

    def handle(self, *args, older_than_minutes: int, dry_run: bool, verbosity: int, **options) -> None:
        if older_than_minutes < 0:
            raise CommandError("--older-than-minutes must be 0 or more.")
        report = cleanup_attachments(older_than=timedelta(minutes=older_than_minutes), dry_run=dry_run)
        if verbosity >= 2 or dry_run:
            for name in report.orphan_files:
                self.stdout.write(f"orphan file: {name}")
            for pk in report.unattached_rows:
                self.stdout.write(f"unattached row: {pk}")
        verb = "Would remove" if dry_run else "Removed"
        self.stdout.write(
            f"{verb} {len(report.orphan_files)} orphaned file(s) and {len(report.unattached_rows)} unattached row(s)."
        )
