"""`manage.py load_demo`: the demo practices, staff, patients, mailboxes and threads. Safe to run again."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from core.demo import DEMO_PASSWORD
from core.demo.scenario import load_demo
from core.models import Conversation, Mailbox, Message, Patient, Practice, User


class Command(BaseCommand):
    help = "Load the demo practices (North Clinic, South Clinic) with staff, patients, mailboxes and threads."

    def handle(self, *args, **options) -> None:
        load_demo()
        self.stdout.write(
            f"Demo loaded; the database now holds {Practice.objects.count()} practices, {User.objects.count()} users "
            f"(password {DEMO_PASSWORD!r}), {Patient.objects.count()} patients, {Mailbox.objects.count()} mailboxes, "
            f"{Conversation.objects.count()} conversations, {Message.objects.count()} messages."
        )
