"""`manage.py load_demo`: the demo practices, staff, patients, mailboxes and threads, once.

`make run` calls it on every start, so a database that already holds the demo is left alone: re-applying the
directory would revert the permissions, memberships and settings changed in the Workbench since.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from core.demo import DEMO_PASSWORD
from core.demo.scenario import demo_is_loaded, load_demo
from core.models import Conversation, Mailbox, Message, Patient, Practice, User


class Command(BaseCommand):
    help = (
        "Load the demo practices (North Clinic, South Clinic) with staff, patients, mailboxes and threads, "
        "unless the database already holds them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reload",
            action="store_true",
            help="re-apply the demo even when loaded (reverts demo staff, permissions and settings changed since)",
        )

    def handle(self, *args, **options) -> None:
        if demo_is_loaded() and not options["reload"]:
            self.stdout.write(
                "The demo is already loaded; left as it is, with every change made since "
                "(`manage.py load_demo --reload` re-applies it)."
            )
            return
        load_demo()
        self.stdout.write(
            f"Demo loaded; the database now holds {Practice.objects.count()} practices, {User.objects.count()} users "
            f"(password {DEMO_PASSWORD!r}), {Patient.objects.count()} patients, {Mailbox.objects.count()} mailboxes, "
            f"{Conversation.objects.count()} conversations, {Message.objects.count()} messages."
        )
