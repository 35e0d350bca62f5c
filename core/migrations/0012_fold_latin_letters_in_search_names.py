"""Search names now fold the Latin letters NFKD keeps whole ("Łukasz" -> "lukasz", "Øster" -> "oster",
"Æbeltoft" -> "aebeltoft"): recompute the stored column of the names that have such letters.

On PostgreSQL the update triggers of migrations 0007/0008 rewrite those patients' token and pair rows from the new
`search_name`, so the search tables need no statement of their own.
"""

from django.db import migrations

BATCH = 5000


def recompute(apps, schema_editor):
    from core.text import normalize_search_text

    Patient = apps.get_model("core", "Patient")
    limit = Patient._meta.get_field("search_name").max_length
    last_pk = 0
    while True:
        batch = list(
            Patient.objects.filter(pk__gt=last_pk)
            .order_by("pk")
            .only("pk", "first_name", "last_name", "search_name")[:BATCH]
        )
        if not batch:
            return
        changed = []
        for patient in batch:
            name = normalize_search_text(f"{patient.first_name} {patient.last_name}")[:limit]
            if name != patient.search_name:
                patient.search_name = name
                changed.append(patient)
        Patient.objects.bulk_update(changed, ["search_name"])
        last_pk = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [("core", "0011_live_access_events")]

    operations = [migrations.RunPython(recompute, migrations.RunPython.noop)]
