"""`manage.py issue_token --user USERNAME | --patient ACCOUNT --practice KEY`: prints a new bearer token."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.management.commands._token_owner import add_owner_arguments, resolve_owner
from core.tokens import issue_token


class Command(BaseCommand):
    help = "Issue a bearer token for a staff user or a patient and print it, alone, on stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        add_owner_arguments(parser)
        parser.add_argument("--ttl-hours", type=int, help="lifetime in hours (default: the TOKEN_TTL_HOURS setting)")

    def handle(self, *args, **options) -> None:
        owner = resolve_owner(options)
        if owner.user is not None and not owner.user.is_active:
            raise CommandError(f"The user {owner.user.username!r} is disabled; activate it first.")
        ttl_hours = options.get("ttl_hours")
        if ttl_hours is not None and ttl_hours <= 0:
            raise CommandError("--ttl-hours must be a positive number of hours.")
        ttl = timedelta(hours=ttl_hours) if ttl_hours else None
        self.stdout.write(issue_token(user=owner.user, patient=owner.patient, ttl=ttl))
