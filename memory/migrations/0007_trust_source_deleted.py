"""Memory.source_deleted: learned in a conversation the person has since deleted."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0006_drop_redundant_user_kind_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="memory",
            name="source_deleted",
            field=models.BooleanField(default=False),
        ),
    ]
