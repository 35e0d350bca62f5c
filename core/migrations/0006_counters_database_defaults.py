"""Database defaults for the counters (bulk loaders may omit them); read states' mailbox becomes required."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0005_unread_counters"),
    ]

    operations = [
        migrations.AlterField(
            model_name="conversation",
            name="patient_message_count",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name="mailbox",
            name="patient_message_count",
            field=models.PositiveBigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name="readstate",
            name="read_patient_count",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(model_name="readstate", name="mailbox_id", field=models.BigIntegerField()),
        migrations.AddIndex(
            model_name="readstate",
            index=models.Index(fields=["user", "mailbox_id"], name="readstate_by_user_mailbox"),
        ),
    ]
