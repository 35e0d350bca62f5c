"""`manage.py revoke_tokens --user USERNAME | --patient ACCOUNT --practice KEY`: revokes every token of one owner."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from core.management.commands._token_owner import add_owner_arguments, resolve_owner
from core.tokens import revoke_tokens


class Command(BaseCommand):
    help = "Revoke every live token of a staff user or a patient, and print how many were revoked."

    def add_arguments(self, parser: CommandParser) -> None:
        add_owner_arguments(parser)

    def handle(self, *args, **options) -> None:
        owner = resolve_owner(options)
        count = revoke_tokens(user=owner.user, patient=owner.patient)
        self.stdout.write(f"Revoked {count} token{'s' if count != 1 else ''} of {owner.describe()}.")
