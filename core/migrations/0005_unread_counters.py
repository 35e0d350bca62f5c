"""Unread counts from counters instead of scanning messages: patient-message counts on conversations and
mailboxes, and how many of them each user has read (with the mailbox, for per-mailbox sums).

The column is made NOT NULL in the next migration: PostgreSQL refuses to ALTER a table in the transaction that
just updated its rows ("pending trigger events")."""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce


def fill_counters(apps, schema_editor):
    Conversation = apps.get_model("core", "Conversation")
    Mailbox = apps.get_model("core", "Mailbox")
    Message = apps.get_model("core", "Message")
    ReadState = apps.get_model("core", "ReadState")
    from_patient = Message.objects.filter(conversation=OuterRef("pk"), direction="FROM_PATIENT").order_by()
    Conversation.objects.update(
        patient_message_count=Coalesce(
            Subquery(from_patient.values("conversation").annotate(n=Count("pk")).values("n")[:1]), 0
        )
    )
    per_mailbox = Conversation.objects.filter(mailbox=OuterRef("pk")).order_by()
    Mailbox.objects.update(
        patient_message_count=Coalesce(
            Subquery(per_mailbox.values("mailbox").annotate(n=Sum("patient_message_count")).values("n")[:1]), 0
        )
    )
    ReadState.objects.update(
        mailbox_id=Subquery(Conversation.objects.filter(pk=OuterRef("conversation_id")).values("mailbox_id")[:1])
    )
    read = Message.objects.filter(
        conversation=OuterRef("conversation_id"),
        direction="FROM_PATIENT",
        sequence__lte=OuterRef("last_read_sequence"),
    ).order_by()
    ReadState.objects.update(
        read_patient_count=Coalesce(Subquery(read.values("conversation").annotate(n=Count("pk")).values("n")[:1]), 0)
    )


class Migration(migrations.Migration):
    dependencies = [("core", "0004_recompute_patient_search_names")]

    operations = [
        migrations.AddField(
            model_name="conversation", name="patient_message_count", field=models.PositiveIntegerField(default=0)
        ),
        migrations.AddField(
            model_name="mailbox", name="patient_message_count", field=models.PositiveBigIntegerField(default=0)
        ),
        migrations.AddField(
            model_name="readstate", name="read_patient_count", field=models.PositiveIntegerField(default=0)
        ),
        migrations.AddField(model_name="readstate", name="mailbox_id", field=models.BigIntegerField(null=True)),
        migrations.RunPython(fill_counters, migrations.RunPython.noop),
    ]
