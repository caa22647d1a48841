from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_endpoints"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="finish_reason",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
    ]
