# Review before saving and local-only memories were built side by side; neither depends on
# the other's tables.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0011_local_only"),
        ("memory", "0011_review_pending"),
    ]

    operations = []
