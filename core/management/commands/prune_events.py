"""Deletes live events older than the retention (settings.MAILBOX["EVENT_RETENTION_DAYS"])."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from core.live import prune_events


class Command(BaseCommand):
    help = "Delete logged live events past retention; subscribers resuming from them are told to refetch."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Override EVENT_RETENTION_DAYS.")

    def handle(self, *args, days: int | None = None, **options) -> None:
        deleted = prune_events(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} events.")
