"""Where a conversation's messages say forgotten facts: a summary never reads them again.

A summary a later forget empties is rebuilt from its conversation without those sentences.
Summaries written before this migration may have had facts forgotten whose positions were
never recorded, so theirs is rebuilt only from after what they had read (their "floor").
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("memory", "0013_recallspeed_covering_index")]

    operations = [
        migrations.AddField(
            model_name="conversationsummary",
            name="forgotten_spans",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunSQL(
            "UPDATE memory_conversationsummary "
            "SET forgotten_spans = jsonb_build_object('floor', last_message_id)",
            migrations.RunSQL.noop,
        ),
    ]
