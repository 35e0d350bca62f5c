"""`manage.py demo_tokens --url URL`: where to click and what to paste to try the demo (run `load_demo` first)."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.demo import DEMO_PASSWORD, DEMO_PRACTICE_KEYS, DEMO_TOKEN_PATIENT, DEMO_TOKEN_USERS
from core.models import Membership, Patient, User
from core.tokens import issue_token


class Command(BaseCommand):
    help = "Issue fresh tokens for a few demo users and a demo patient, and print how to use them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="where the server will listen")

    def handle(self, *args, url: str, **options) -> None:
        base = url if url.endswith("/") else url + "/"
        users = {u.username: u for u in User.objects.filter(username__in=[name for name, _ in DEMO_TOKEN_USERS])}
        practice_key, account = DEMO_TOKEN_PATIENT
        patient = Patient.objects.filter(practice__key=practice_key, account_number=account).first()
        if len(users) != len(DEMO_TOKEN_USERS) or patient is None:
            raise CommandError("The demo data is missing; run `python manage.py load_demo` first.")
        out = self.stdout.write
        out("")
        out(self.style.SUCCESS("Patient Messages Mailbox — demo"))
        out(f"  Web app    {base}")
        out(f"  GraphiQL   {base}graphql")
        out("")
        out(self.style.MIGRATE_HEADING(f"Browser login (every demo user's password: {DEMO_PASSWORD})"))
        for username, role in DEMO_TOKEN_USERS:
            out(f"  {username:<8} {users[username].display_name()} — {role}")
        out(f"  also     {', '.join(self._other_logins())}")
        out("")
        out(
            self.style.MIGRATE_HEADING(
                'API tokens, one header each (in GraphiQL\'s Headers tab: {"Authorization": "Bearer …"})'
            )
        )
        for username, role in DEMO_TOKEN_USERS:
            out(f"  {users[username].display_name()} ({username}, {role.split(':')[0]})")
            out(f"    Authorization: Bearer {issue_token(user=users[username])}")
        out(f"  {patient.full_name} (patient {account} of {patient.practice.name}, portal API)")
        out(f"    Authorization: Bearer {issue_token(patient=patient)}")
        out("")
        out(self.style.MIGRATE_HEADING("Email notices (manage.py notify_worker, started beside the server)"))
        out(f"  {self._mail_destination()}")
        out("")

    @staticmethod
    def _mail_destination() -> str:
        from django.conf import settings

        if settings.EMAIL_BACKEND.endswith("console.EmailBackend"):
            return "printed in this terminal (console backend); set EMAIL_URL=smtp://host:25 to send them"
        return f"sent through {settings.EMAIL_HOST}:{settings.EMAIL_PORT} ({settings.EMAIL_BACKEND.rsplit('.', 2)[-2]})"

    def _other_logins(self) -> list[str]:
        shown = {name for name, _ in DEMO_TOKEN_USERS}
        counts = Counter(
            Membership.objects.filter(practice__key__in=DEMO_PRACTICE_KEYS).values_list("user__username", flat=True)
        )
        return [
            f"{name} (in {n} practices)" if n > 1 else name for name, n in sorted(counts.items()) if name not in shown
        ]
