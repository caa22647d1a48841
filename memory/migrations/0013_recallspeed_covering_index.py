"""Recall's per-person scan as an index-only scan (README, "Recall speed").

memory_user_recall replaces the plain user_id index: user_id, then every column recall reads
for each of the person's rows, the vector included. A person's entries sit together on the
index's leaf pages whatever order their rows were written in (in the heap they lie scattered,
about one page a row). memory_user_search (GIN over user_id, through btree_gin, and the
tsvector) finds the person's rows that share a word with the message, the only rows whose
text recall still reads from the table.

Adding the stored search_length rewrites memory_memory (about 6 s per 100,000 rows here,
the table locked meanwhile), which clears its visibility map: the migration vacuums the table
at the end, so index-only scans need no heap visits from the start, and autovacuum is asked
to come back sooner than PostgreSQL's default 20 % of changed rows to keep the map current.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import BtreeGinExtension
from django.db import migrations, models

from memory.models import RECALL_INDEX_HOLDS_VECTOR


class Migration(migrations.Migration):
    # VACUUM cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("memory", "0012_review_pending"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="memory",
            name="search_length",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.Func(
                    django.contrib.postgres.search.SearchVector(
                        "content", "recall_keys", config="english"
                    ),
                    function="length",
                ),
                output_field=models.IntegerField(),
            ),
        ),
        # The new index first: the foreign key's cascade never goes without one.
        migrations.AddIndex(
            model_name="memory",
            index=models.Index(
                fields=["user"],
                include=[
                    "id",
                    "kind",
                    "importance",
                    "pinned",
                    "expires_at",
                    "created_at",
                    "updated_at",
                    "happened_at",
                    "source_conversation_id",
                    "source_message_id",
                    "search_length",
                ]
                + (["embedding"] if RECALL_INDEX_HOLDS_VECTOR else []),
                name="memory_user_recall",
            ),
        ),
        migrations.AlterField(
            model_name="memory",
            name="user",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memories",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        BtreeGinExtension(),
        migrations.AddIndex(
            model_name="memory",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["user", "search"], name="memory_user_search"
            ),
        ),
        migrations.RunSQL(
            "ALTER TABLE memory_memory SET (autovacuum_vacuum_scale_factor = 0.02, "
            "autovacuum_vacuum_insert_scale_factor = 0.02)",
            "ALTER TABLE memory_memory RESET (autovacuum_vacuum_scale_factor, "
            "autovacuum_vacuum_insert_scale_factor)",
        ),
        migrations.RunSQL("VACUUM (ANALYZE) memory_memory", migrations.RunSQL.noop),
    ]
