"""Read-only memory queries shared by the memory page and the API, scoped to the user in SQL."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from pgvector.django import CosineDistance

from memory import embeddings
from memory.models import (
    ConversationSummary,
    Entity,
    ExtractionRun,
    Memory,
    MemoryEvent,
    MemoryQuerySet,
)

SEARCH_MIN_SIMILARITY = 0.35


def memory_list(*, user: Any, kind: str | None = None) -> MemoryQuerySet:
    memories = Memory.objects.for_user(user).live()
    if kind:
        memories = memories.filter(kind=kind)
    return memories.order_by("kind", "-pinned", "-updated_at", "-id")


def memory_for(*, user: Any, memory_id: int) -> Memory:
    """Raises Memory.DoesNotExist for a memory that is not the user's."""
    return Memory.objects.for_user(user).get(pk=memory_id)


def memory_groups(*, user: Any) -> list[dict[str, Any]]:
    """The person's live memories grouped by kind, in the page's order, with counts."""
    memories = list(memory_list(user=user))
    return [
        {
            "kind": kind,
            "label": label,
            "memories": [m for m in memories if m.kind == kind],
        }
        for kind, label in Memory.Kind.choices
    ]


def memory_search(
    *, user: Any, query: str, kind: str | None = None, limit: int = 50
) -> list[Memory]:
    """Search by meaning and by text: close in embedding space, or containing the words."""
    query = query.strip()[:500]
    if not query:
        return []
    vector = embeddings.embed_one(query)
    memories = memory_list(user=user, kind=kind)
    matches = (
        memories.annotate(distance=CosineDistance("embedding", vector))
        .filter(Q(content__icontains=query) | Q(distance__lte=1 - SEARCH_MIN_SIMILARITY))
        .order_by("distance")[:limit]
    )
    return list(matches)


def memory_history(*, user: Any, memory_id: int) -> QuerySet[MemoryEvent]:
    return MemoryEvent.objects.filter(user=user, memory_ref=memory_id).order_by(
        "-created_at", "-id"
    )


def entity_list(*, user: Any) -> QuerySet[Entity]:
    return Entity.objects.filter(user=user).order_by("type", "name")


def entity_for(*, user: Any, entity_id: int) -> Entity:
    """Raises Entity.DoesNotExist for an entity that is not the user's."""
    return Entity.objects.get(user=user, pk=entity_id)


def summary_list(*, user: Any) -> QuerySet[ConversationSummary]:
    # An emptied summary (all of it forgotten) only marks where the next one starts.
    return ConversationSummary.objects.filter(user=user).exclude(content="").order_by("-updated_at")


def learned_from(*, user: Any, source_message_id: int) -> tuple[ExtractionRun | None, list[Memory]]:
    """The extraction run of one message and the memories it added or changed."""
    run = ExtractionRun.objects.filter(user=user, source_message_id=source_message_id).first()
    if run is None:
        return None, []
    changed = MemoryEvent.objects.filter(
        user=user,
        source_message_id=source_message_id,
        action__in=[MemoryEvent.Action.ADDED, MemoryEvent.Action.UPDATED],
    ).values("memory_ref")
    return run, list(Memory.objects.for_user(user).filter(pk__in=changed))


def memory_counts(*, user: Any) -> dict[str, int]:
    return {
        "memories": Memory.objects.for_user(user).count(),
        "summaries": ConversationSummary.objects.filter(user=user).exclude(content="").count(),
        "events": MemoryEvent.objects.filter(user=user).count(),
    }
