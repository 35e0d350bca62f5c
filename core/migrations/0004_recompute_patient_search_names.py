"""Search names now drop apostrophes and split on punctuation ("O'Brien" -> "obrien", "García-López" ->
"garcia lopez"): recompute the stored column."""

from django.db import migrations

BATCH = 5000


def recompute(apps, schema_editor):
    from core.text import normalize_search_text

    Patient = apps.get_model("core", "Patient")
    last_pk = 0
    while True:
        batch = list(Patient.objects.filter(pk__gt=last_pk).order_by("pk")[:BATCH])
        if not batch:
            return
        changed = []
        for patient in batch:
            name = normalize_search_text(f"{patient.first_name} {patient.last_name}")
            if name != patient.search_name:
                patient.search_name = name
                changed.append(patient)
        Patient.objects.bulk_update(changed, ["search_name"])
        last_pk = batch[-1].pk


class Migration(migrations.Migration):
    dependencies = [("core", "0003_patient_search_indexes")]

    operations = [migrations.RunPython(recompute, migrations.RunPython.noop)]
