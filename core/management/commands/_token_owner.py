"""Shared by the token commands: `--user USERNAME` or `--patient ACCOUNT --practice KEY` names a token owner."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.management.base import CommandError, CommandParser

from core.models import Patient, User


@dataclass(frozen=True)
class TokenOwner:
    user: User | None = None
    patient: Patient | None = None

    def describe(self) -> str:
        if self.user is not None:
            return f"user {self.user.username}"
        return f"patient {self.patient.account_number} of practice {self.patient.practice.key}"


def add_owner_arguments(parser: CommandParser) -> None:
    parser.add_argument("--user", metavar="USERNAME", help="a staff user")
    parser.add_argument("--patient", metavar="ACCOUNT_NUMBER", help="a patient (with --practice)")
    parser.add_argument("--practice", metavar="PRACTICE_KEY", help="the patient's practice")


def resolve_owner(options: dict) -> TokenOwner:
    username, account, practice_key = options.get("user"), options.get("patient"), options.get("practice")
    if bool(username) == bool(account):
        raise CommandError("Pass either --user USERNAME, or --patient ACCOUNT_NUMBER --practice PRACTICE_KEY.")
    if username:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        return TokenOwner(user=user)
    if not practice_key:
        raise CommandError("--patient needs --practice PRACTICE_KEY (account numbers are unique per practice).")
    patient = (
        Patient.objects.select_related("practice").filter(practice__key=practice_key, account_number=account).first()
    )
    if patient is None:
        raise CommandError(f"No patient with account number {account!r} in practice {practice_key!r}.")
    return TokenOwner(patient=patient)
