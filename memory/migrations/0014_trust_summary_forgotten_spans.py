"""Where a conversation's messages say forgotten facts: a summary never reads them again."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("memory", "0013_recallspeed_covering_index")]

    operations = [
        migrations.AddField(
            model_name="conversationsummary",
            name="forgotten_spans",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
