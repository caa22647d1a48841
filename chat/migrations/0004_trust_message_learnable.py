"""Message.learnable: whether memory was on when a message was said."""

from typing import Any

from django.db import migrations, models


def incognito_messages_are_not_learnable(apps: Any, schema_editor: Any) -> None:
    # Whether memory was paused when older messages were said is not known; incognito is.
    Message = apps.get_model("chat", "Message")
    Message.objects.filter(conversation__incognito=True).update(learnable=False)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0003_recall_record"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="learnable",
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(incognito_messages_are_not_learnable, migrations.RunPython.noop),
    ]
