"""`manage.py reembed`: recompute every memory and summary vector with the current embedder.

Run it after changing the embedding model (EMBEDDING_BASE_URL, EMBEDDING_MODEL): vectors of
two models are not comparable, so recall is wrong until every stored vector is redone.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DataError, transaction
from django.db.models import QuerySet

from config import llm
from memory import embeddings
from memory.models import ConversationSummary, Memory


class Command(BaseCommand):
    help = (
        "Re-embed every memory and conversation summary with the current embedding backend, "
        "in batches (run after changing the embedding model). Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=256,
            help="Texts embedded and written per batch (default 256).",
        )

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.stdout.write(
            f"Embedding with {embeddings.embedding_model_name()} "
            f"({embeddings.embedding_dimensions()} dimensions), {batch_size} per batch."
        )
        memories = self._reembed(Memory.objects.all(), "memories", batch_size)
        summaries = self._reembed(ConversationSummary.objects.all(), "summaries", batch_size)
        self.stdout.write(
            self.style.SUCCESS(f"Re-embedded {memories} memories and {summaries} summaries.")
        )

    def _reembed(self, rows: QuerySet[Any], label: str, batch_size: int) -> int:
        total = rows.count()
        seen = written = 0
        last_pk = 0
        while True:
            # Keyset pagination: stable while rows are added or deleted meanwhile.
            batch = list(
                rows.filter(pk__gt=last_pk).order_by("pk").values_list("pk", "content")[:batch_size]
            )
            if not batch:
                break
            try:
                vectors = embeddings.embed([content for _, content in batch])
            except llm.LLMError as exc:
                raise CommandError(
                    f"Embedding failed after {written} {label}: {exc}. Run the command again."
                ) from exc
            try:
                with transaction.atomic():
                    for (pk, content), vector in zip(batch, vectors, strict=True):
                        # Only if the text is unchanged: an edit made meanwhile was embedded
                        # with the current model already, and this vector is of the old text.
                        written += rows.filter(pk=pk, content=content).update(embedding=vector)
            except DataError as exc:
                raise CommandError(
                    f"The new vectors do not fit the database column ({exc}). A change of "
                    "EMBEDDING_DIMENSIONS needs a migration of the embedding columns first."
                ) from exc
            seen += len(batch)
            last_pk = batch[-1][0]
            self.stdout.write(f"  {label}: {seen}/{max(total, seen)}")
        return written
