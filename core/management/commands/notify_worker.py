"""Follows the event log and emails patients about new staff messages (core.notices)."""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, connections

from core import notices

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Email patients a notice (no message text) when staff write to them; runs until stopped."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Read the log, send what is due, then exit.")
        parser.add_argument("--poll-seconds", type=float, default=None, help="Override NOTIFY_POLL_SECONDS.")

    def handle(self, *args, once: bool = False, poll_seconds: float | None = None, **options) -> None:
        poll = settings.MAILBOX["NOTIFY_POLL_SECONDS"] if poll_seconds is None else poll_seconds
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.stderr.write(f"notify_worker: mail through {self._destination()}; polling every {poll:g} s")
        while not self.stopping:
            try:
                reclaimed = notices.reclaim_abandoned()
                result = notices.run_pass()
            except DatabaseError:  # the database restarted or is unreachable: the log waits; so do we
                log.exception("notify_worker: database error; retrying in %g s", poll)
                connections.close_all()
                time.sleep(max(poll, 1.0))
                continue
            if result.read or result.sent or result.failed or reclaimed:
                self.stderr.write(
                    f"notify_worker: read {result.read} events, queued {result.queued}, skipped "
                    f"{sum(result.skipped.values())}, sent {result.sent}, failed {result.failed}"
                    + (f", took up {reclaimed} unfinished" if reclaimed else "")
                )
            if once:
                return
            time.sleep(poll)

    def _stop(self, *_args) -> None:
        self.stopping = True

    @staticmethod
    def _destination() -> str:
        backend = settings.EMAIL_BACKEND.rsplit(".", 2)[-2]
        if backend == "smtp":
            return f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        if backend == "console":
            return "the console (this process's stdout; set EMAIL_URL=smtp://host:25 to send)"
        return backend
