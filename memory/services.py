"""Memory services: remember, recall, correct and forget what Mnemo knows about a person.

Every function takes the user explicitly and scopes every query to them in SQL.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from config import llm
from config.errors import DomainError
from memory import embeddings, retention
from memory.entities import names_in as entity_names_in
from memory.models import ConversationSummary, Memory, MemoryEvent


class MemoryRequestError(DomainError):
    """A memory request that cannot be served; `message` is shown to the person."""


class InvalidMemory(MemoryRequestError):
    status = 400


class MemoryGone(MemoryRequestError):
    """The memory was deleted meanwhile (another tab, retention): a stale edit."""

    status = 404


def clean_content(content: Any) -> str:
    text = " ".join(content.split()) if isinstance(content, str) else ""
    if not text:
        raise InvalidMemory("A memory cannot be empty.")
    limit = settings.MEMORY_MAX_CHARS
    if len(text) > limit:
        raise InvalidMemory(
            f"A memory can be at most {limit} characters (this one has {len(text)})."
        )
    return text


def _event(
    memory: Memory,
    action: str,
    actor: str,
    *,
    old: str = "",
    new: str = "",
    source: int | None = None,
) -> None:
    MemoryEvent.objects.create(
        user_id=memory.user_id,
        memory=memory if action != MemoryEvent.Action.DELETED else None,
        memory_ref=memory.pk,
        kind=memory.kind,
        action=action,
        actor=actor,
        old_content=old,
        new_content=new,
        source_message_id=source,
    )


# --- Writes ---


def remember(
    *,
    user: Any,
    content: str,
    kind: str = Memory.Kind.FACT,
    importance: float = 0.5,
    actor: str = MemoryEvent.Actor.USER,
    source_message_id: int | None = None,
    source_conversation_id: int | None = None,
    source_excerpt: str = "",
    embedding: list[float] | None = None,
) -> Memory:
    """Add a memory (embedded now) and record the `added` event; one transaction."""
    content = clean_content(content)
    if kind not in Memory.Kind.values:
        raise InvalidMemory(f"Unknown kind '{kind}': use one of {', '.join(Memory.Kind.values)}.")
    vector = embedding if embedding is not None else embeddings.embed_one(content)
    with transaction.atomic():
        now = timezone.now()
        memory = Memory.objects.create(
            user=user,
            kind=kind,
            created_at=now,
            updated_at=now,
            expires_at=retention.expiry_for(kind, now),
            content=content,
            embedding=vector,
            importance=max(0.0, min(1.0, importance)),
            source_message_id=source_message_id,
            source_conversation_id=source_conversation_id,
            source_excerpt=source_excerpt[:1000],
        )
        _event(memory, MemoryEvent.Action.ADDED, actor, new=content, source=source_message_id)
    return memory


def _locked(user: Any, memory_id: int) -> Memory:
    try:
        return Memory.objects.for_user(user).select_for_update().get(pk=memory_id)
    except Memory.DoesNotExist:
        raise MemoryGone(
            "This memory no longer exists; it may have been deleted elsewhere."
        ) from None


def update_memory(
    *,
    user: Any,
    memory_id: int,
    content: str | None = None,
    kind: str | None = None,
    actor: str = MemoryEvent.Actor.USER,
    source_message_id: int | None = None,
    embedding: list[float] | None = None,
) -> Memory:
    """Correct a memory's text (re-embedded) or kind, keeping the old text in its history."""
    new_content = clean_content(content) if content is not None else None
    if kind is not None and kind not in Memory.Kind.values:
        raise InvalidMemory(f"Unknown kind '{kind}'.")
    vector = embedding
    if vector is None and new_content is not None:
        vector = embeddings.embed_one(new_content)
    with transaction.atomic():
        memory = _locked(user, memory_id)
        old, old_kind = memory.content, memory.kind
        if (new_content is None or new_content == old) and (kind is None or kind == old_kind):
            return memory  # nothing changed: no new version, no history entry
        if new_content is not None and new_content != old:
            memory.content = new_content
            memory.embedding = vector
        if kind is not None:
            memory.kind = kind
        memory.updated_at = timezone.now()
        # A changed (or re-kinded) memory starts its life again under its kind's policy.
        memory.expires_at = retention.expiry_for(memory.kind, memory.updated_at)
        if source_message_id is not None:
            memory.source_message_id = source_message_id
        memory.save()
        _event(
            memory,
            MemoryEvent.Action.UPDATED,
            actor,
            old=old,
            new=memory.content,
            source=source_message_id,
        )
    return memory


def set_pinned(*, user: Any, memory_id: int, pinned: bool) -> Memory:
    """Pin (never expires) or unpin a memory; records the change in its history."""
    with transaction.atomic():
        memory = _locked(user, memory_id)
        if memory.pinned != pinned:
            memory.pinned = pinned
            memory.save(update_fields=["pinned"])
            action = MemoryEvent.Action.PINNED if pinned else MemoryEvent.Action.UNPINNED
            _event(memory, action, MemoryEvent.Actor.USER, new=memory.content)
    return memory


def forget(
    *,
    user: Any,
    memory_id: int,
    actor: str = MemoryEvent.Actor.USER,
    source_message_id: int | None = None,
) -> None:
    """Delete a memory: gone from recall at once.

    When the person deletes it, the event keeps no text (they asked Mnemo to forget it);
    when the extractor deletes a contradicted fact, the old text stays in the history.
    """
    with transaction.atomic():
        memory = _locked(user, memory_id)
        keep_text = actor != MemoryEvent.Actor.USER
        _event(
            memory,
            MemoryEvent.Action.DELETED,
            actor,
            old=memory.content if keep_text else "",
            source=source_message_id,
        )
        memory.delete()


def forget_all(*, user: Any) -> int:
    """Delete every memory and summary of the person and their history; returns the count."""
    with transaction.atomic():
        # The total would also count the cascaded "memories used" links of chat messages.
        _, per_model = Memory.objects.for_user(user).delete()
        MemoryEvent.objects.filter(user=user).delete()
        ConversationSummary.objects.filter(user=user).delete()
    return per_model.get(Memory._meta.label, 0)


def confirm(*, user: Any, memory_id: int, kind: str | None = None) -> None:
    """A duplicate statement: the memory is confirmed (and its expiry restarts), not copied.

    `kind`, when the caller already read it, saves reading the memory first.
    """
    if kind is None:
        kind = (
            Memory.objects.for_user(user)
            .filter(pk=memory_id)
            .values_list("kind", flat=True)
            .first()
        )
        if kind is None:
            return
    now = timezone.now()
    # Scoped to the person and the kind read: a memory gone or re-kinded meanwhile is skipped.
    Memory.objects.for_user(user).filter(pk=memory_id, kind=kind).update(
        confirmed_at=now,
        confirmations=F("confirmations") + 1,
        expires_at=retention.expiry_for(kind, now),
    )


def mark_used(*, user: Any, memory_ids: list[int]) -> None:
    """Stamp `last_used_at` on memories a reply used (one UPDATE, after the reply)."""
    if memory_ids:
        Memory.objects.for_user(user).filter(pk__in=memory_ids).update(last_used_at=timezone.now())


def save_summary(
    *,
    user: Any,
    conversation_id: int,
    conversation_title: str,
    content: str,
    last_message_id: int,
    message_count: int,
) -> ConversationSummary:
    """Create or replace the rolling summary of a conversation (embedded for recall)."""
    content = " ".join(content.split())[:4000]
    vector = embeddings.embed_one(content)
    summary, _ = ConversationSummary.objects.update_or_create(
        user=user,
        conversation_id=conversation_id,
        defaults={
            "conversation_title": conversation_title[:120],
            "content": content,
            "embedding": vector,
            "last_message_id": last_message_id,
            "message_count": message_count,
            "updated_at": timezone.now(),
        },
    )
    return summary


def summary_for(*, user: Any, conversation_id: int) -> ConversationSummary | None:
    return ConversationSummary.objects.filter(user=user, conversation_id=conversation_id).first()


def summary_for_conversation(*, conversation_id: int) -> ConversationSummary | None:
    """For the summary sweep, which works across people (it writes nothing itself)."""
    return ConversationSummary.objects.filter(conversation_id=conversation_id).first()


def delete_summary(*, user: Any, summary_id: int) -> None:
    deleted, _ = ConversationSummary.objects.filter(user=user, pk=summary_id).delete()
    if not deleted:
        raise ConversationSummary.DoesNotExist


# --- Recall (the hot path) ---


@dataclass(frozen=True)
class RecalledItem:
    source: str  # "memory" or "summary"
    id: int
    kind: str
    content: str
    similarity: float
    text_rank: float
    vector_rank: int
    text_position: int | None
    importance: float
    updated_at: datetime
    score: float = 0.0
    tokens: int = 0
    included: bool = False

    def record(self) -> dict[str, Any]:
        """The item's scores for the reply's recall record (ids and numbers, no text)."""
        return {
            "source": self.source,
            "id": self.id,
            "kind": self.kind,
            "similarity": round(self.similarity, 4),
            "text_rank": round(self.text_rank, 4),
            "vector_rank": self.vector_rank,
            "text_position": self.text_position,
            "importance": round(self.importance, 3),
            "score": round(self.score, 5),
            "included": self.included,
        }


@dataclass(frozen=True)
class Recalled:
    """What recall brought for one message: memories and summaries, ready for the prompt."""

    items: list[RecalledItem] = field(default_factory=list)
    candidates: int = 0
    milliseconds: float = 0.0
    # Everything that was scored, chosen or not (for the inspectable recall record).
    considered: list[RecalledItem] = field(default_factory=list)

    def record(self, limit: int = 20) -> dict[str, Any]:
        return {
            "ms": round(self.milliseconds, 2),
            "candidates": self.candidates,
            "items": [item.record() for item in self.considered[:limit]],
        }

    @property
    def memories(self) -> list[RecalledItem]:
        return [item for item in self.items if item.source == "memory"]

    @property
    def summaries(self) -> list[RecalledItem]:
        return [item for item in self.items if item.source == "summary"]

    @property
    def memory_ids(self) -> list[int]:
        return [item.id for item in self.memories]

    def prompt_block(self) -> str:
        lines = [f"- ({item.kind}) {item.content}" for item in self.memories]
        lines += [f"- (earlier conversation) {item.content}" for item in self.summaries]
        lines += [f"- (about {item.content})" for item in self.entities]
        return "\n".join(lines)

    @property
    def entities(self) -> list[RecalledItem]:
        return [item for item in self.items if item.source == "entity"]


# One statement: the person's live memories ranked by vector similarity and by full-text rank
# (an exact scan of their rows through the (user, kind) index), fused later by reciprocal
# rank; always-on kinds come along whatever their rank; plus the closest summaries.
RECALL_SQL = """
WITH q AS (
    -- Any word may match (OR), not all of them: "How old is Bruno?" must find "My dog Bruno".
    SELECT %(embedding)s::vector AS v,
           replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')::tsquery AS t
),
scored AS (
    SELECT m.id, m.kind, m.content, m.importance, m.updated_at,
           1 - (m.embedding <=> q.v) AS similarity,
           ts_rank_cd(m.search, q.t) AS text_rank
    FROM memory_memory m, q
    WHERE m.user_id = %(user_id)s
      AND (m.pinned OR m.expires_at IS NULL OR m.expires_at > now())
),
ranked AS (
    SELECT scored.*,
           row_number() OVER (ORDER BY similarity DESC, id) AS vector_rank,
           row_number() OVER (ORDER BY text_rank DESC, id) AS text_position
    FROM scored
),
summaries AS (
    SELECT s.id, 'summary' AS kind, s.content, 0.5::float8 AS importance, s.updated_at,
           1 - (s.embedding <=> q.v) AS similarity,
           ts_rank_cd(s.search, q.t) AS text_rank
    FROM memory_conversationsummary s, q
    WHERE s.user_id = %(user_id)s AND s.conversation_id <> %(exclude_conversation)s
    ORDER BY s.embedding <=> q.v
    LIMIT 3
)
SELECT 'memory', id, kind, content, importance, updated_at, similarity, text_rank,
       vector_rank, CASE WHEN text_rank > 0 THEN text_position END
FROM ranked
WHERE vector_rank <= %(depth)s OR (text_rank > 0 AND text_position <= %(depth)s)
   OR kind IN ('profile', 'preference')
UNION ALL
SELECT 'summary', id, kind, content, importance, updated_at, similarity, text_rank,
       row_number() OVER (ORDER BY similarity DESC), NULL
FROM summaries
UNION ALL
SELECT 'entity', e.id, e.type,
       e.name || ' (' || e.type || ')' || COALESCE(': ' || (
           SELECT string_agg(a.key || ': ' || a.value, '; ' ORDER BY a.key)
           FROM jsonb_each_text(e.attributes) a
       ), ''),
       0.6::float8, e.updated_at, 1.0::float8, 0::float8, 1, NULL
FROM memory_entity e
WHERE e.user_id = %(user_id)s AND e.key = ANY(%(names)s)
"""

RRF_K = 60


def score(item: RecalledItem, now: datetime) -> float:
    """Reciprocal-rank fusion of the vector and text ranks, nudged by importance and recency."""
    fused = 1 / (RRF_K + item.vector_rank)
    if item.text_position is not None:
        fused += 1 / (RRF_K + item.text_position)
    age_days = max(0.0, (now - item.updated_at).total_seconds() / 86400)
    recency = math.exp(-age_days / 90)
    # The nudges are worth a few ranks at most: relevance decides, ties go to what matters.
    return fused + 0.002 * item.importance + 0.001 * recency


def recall(
    *,
    user: Any,
    query: str,
    embedding: list[float] | None = None,
    limit: int | None = None,
    token_budget: int | None = None,
    exclude_conversation_id: int | None = None,
) -> Recalled:
    """The person's memories most relevant to `query`, within a token budget.

    Always-on kinds (profile, preference) come first, then relevant facts, tasks and past
    conversation summaries by fused score. One SQL query; embeds `query` unless given
    `embedding`. Read-only: `last_used_at` is stamped later by `mark_used`.
    """
    started = time.perf_counter()
    limit = limit or settings.MEMORY_RECALL_LIMIT
    budget = token_budget or settings.MEMORY_RECALL_TOKEN_BUDGET
    vector = embedding if embedding is not None else embeddings.embed_one(query)
    with connection.cursor() as cursor:
        cursor.execute(
            RECALL_SQL,
            {
                "embedding": "[" + ",".join(f"{x:.7g}" for x in vector) + "]",
                "text": query[:2000],
                "user_id": user.pk,
                "depth": max(limit * 4, 20),
                "exclude_conversation": exclude_conversation_id or 0,
                "names": entity_names_in(query),
            },
        )
        rows = cursor.fetchall()
    now = timezone.now()
    items = [
        RecalledItem(
            source=row[0],
            id=row[1],
            kind=row[2],
            content=row[3],
            importance=row[4],
            updated_at=row[5],
            similarity=float(row[6]),
            text_rank=float(row[7]),
            vector_rank=int(row[8]),
            text_position=row[9],
        )
        for row in rows
    ]
    minimum = settings.MEMORY_MIN_SIMILARITY
    always = [i for i in items if i.source == "memory" and i.kind in Memory.ALWAYS_ON]
    relevant = [
        i
        for i in items
        if (i.source == "summary" or i.kind not in Memory.ALWAYS_ON)
        and (
            i.similarity >= minimum or (i.text_position is not None and i.similarity >= minimum / 2)
        )
    ]
    scored_always = sorted((_with_score(i, now) for i in always), key=lambda i: (-i.score, i.id))
    scored_relevant = sorted(
        (_with_score(i, now) for i in relevant), key=lambda i: (-i.score, i.id)
    )
    chosen: list[RecalledItem] = []
    considered: list[RecalledItem] = []
    spent = 0
    relevant_taken = 0
    for item in scored_always + scored_relevant:
        is_relevant = item.source == "summary" or item.kind not in Memory.ALWAYS_ON
        fits = spent + item.tokens <= budget and not (is_relevant and relevant_taken >= limit)
        if fits:
            item = replace(item, included=True)
            chosen.append(item)
            spent += item.tokens
            relevant_taken += is_relevant
        considered.append(item)
    return Recalled(
        items=chosen,
        candidates=len(items),
        milliseconds=(time.perf_counter() - started) * 1000,
        considered=considered,
    )


def _with_score(item: RecalledItem, now: datetime) -> RecalledItem:
    return replace(item, score=score(item, now), tokens=llm.count_tokens(item.content) + 4)
