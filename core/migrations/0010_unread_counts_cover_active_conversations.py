"""Mailbox unread counts cover the active conversations only (what the mailbox view shows): the mailbox counter
drops the patient messages of archived conversations, and read states say whether their conversation is active."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce


def recount(apps, schema_editor):
    Conversation = apps.get_model("core", "Conversation")
    Mailbox = apps.get_model("core", "Mailbox")
    ReadState = apps.get_model("core", "ReadState")
    active = Conversation.objects.filter(mailbox=OuterRef("pk"), status="ACTIVE").order_by()
    Mailbox.objects.update(
        patient_message_count=Coalesce(
            Subquery(active.values("mailbox").annotate(n=Sum("patient_message_count")).values("n")[:1]), 0
        )
    )
    ReadState.objects.filter(conversation__status="ARCHIVED").update(conversation_active=False)


class Migration(migrations.Migration):
    dependencies = [("core", "0009_drop_unused_name_search_indexes")]

    operations = [
        migrations.AddField(
            model_name="readstate",
            name="conversation_active",
            field=models.BooleanField(db_default=True, default=True),
        ),
        migrations.RunPython(recount, migrations.RunPython.noop),
    ]
