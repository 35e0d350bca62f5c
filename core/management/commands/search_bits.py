"""Keeps the message search's bitmaps of common lexemes (core.message_search_bits); PostgreSQL only."""

from __future__ import annotations

import logging
import signal
import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection, connections

from core import message_search_bits

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Index new and changed messages into the search bitmaps; --follow keeps doing it until stopped."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--follow", action="store_true", help="Run again every --poll-seconds until stopped.")
        parser.add_argument("--poll-seconds", type=float, default=5.0)
        parser.add_argument(
            "--wait-seconds", type=float, default=30.0, help="How long to wait for running sends to end."
        )

    def handle(self, *args, follow: bool = False, poll_seconds: float = 5.0, wait_seconds: float = 30.0, **options):
        if connection.vendor != "postgresql":
            self.stderr.write("search_bits: PostgreSQL only (SQLite searches with FTS5); nothing to do")
            return
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        while not self.stopping:
            started = time.monotonic()
            try:
                result = message_search_bits.refresh(wait_seconds=wait_seconds)
            except DatabaseError:
                if not follow:
                    raise
                log.exception("search_bits: database error; retrying in %g s", poll_seconds)
                connections.close_all()
                time.sleep(max(poll_seconds, 1.0))
                continue
            if result.indexed or result.promoted or result.reindexed or not result.settled or not follow:
                self.stderr.write(
                    f"search_bits: high water {result.high_water} (+{result.indexed}), "
                    f"{len(result.promoted)} lexemes given bitmaps, {result.reindexed} changed bodies indexed again"
                    + ("" if result.settled else ", a send still running: high water kept")
                    + f", {time.monotonic() - started:.1f} s"
                )
            if not follow:
                return
            time.sleep(poll_seconds)

    def _stop(self, *_args) -> None:
        self.stopping = True
