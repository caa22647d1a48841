from django.db import migrations

DEFAULTS = [
    ("profile", None, None),
    ("preference", None, None),
    ("fact", 365, 2000),
    ("task", 90, 500),
]


def create_defaults(apps, schema_editor):
    RetentionPolicy = apps.get_model("memory", "RetentionPolicy")
    for kind, ttl_days, cap in DEFAULTS:
        RetentionPolicy.objects.get_or_create(
            kind=kind, defaults={"ttl_days": ttl_days, "max_per_user": cap}
        )


class Migration(migrations.Migration):
    dependencies = [("memory", "0003_retention")]
    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
