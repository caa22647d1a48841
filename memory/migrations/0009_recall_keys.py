import django.contrib.postgres.search
from django.contrib.postgres.search import SearchVector
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0008_recall_tokens_happened_at"),
    ]

    # A generated column's expression cannot be altered in place: drop it and add it again
    # over content and the new recall keys (PostgreSQL computes it for every row).
    operations = [
        migrations.AddField(
            model_name="memory",
            name="recall_keys",
            field=models.TextField(blank=True, db_default="", default=""),
        ),
        migrations.RemoveField(model_name="memory", name="search"),
        migrations.AddField(
            model_name="memory",
            name="search",
            field=models.GeneratedField(
                db_persist=True,
                expression=SearchVector("content", "recall_keys", config="english"),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
    ]
