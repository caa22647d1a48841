"""Memory services: remember, recall, correct and forget what Mnemo knows about a person.

Every function takes the user explicitly and scopes every query to them in SQL.
"""

from __future__ import annotations

import math
import re
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
from memory import embeddings, privacy, retention
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
    """Whitespace-normalised memory text; raises InvalidMemory for empty, too long, a secret
    or an instruction to the assistant (none of them is ever stored, whoever writes it)."""
    text = " ".join(content.split()) if isinstance(content, str) else ""
    if not text:
        raise InvalidMemory("A memory cannot be empty.")
    limit = settings.MEMORY_MAX_CHARS
    if len(text) > limit:
        raise InvalidMemory(
            f"A memory can be at most {limit} characters (this one has {len(text)})."
        )
    if privacy.contains_secret(text):
        raise InvalidMemory(
            "This looks like a secret (a password, code, key, card, account or id number). "
            "Mnemo never stores secrets: keep them in a password manager."
        )
    if privacy.is_injection(text):
        raise InvalidMemory(
            "This reads as an instruction to the assistant (a role tag or an order to ignore "
            "its rules), not as something about you, so it is not stored."
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
            # The person's words, with any secret in them replaced by a placeholder.
            source_excerpt=privacy.redact(source_excerpt[:1000])[0],
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


def scrub_history(*, user: Any, memory_ids: list[int]) -> int:
    """Remove the words from every event of these memories: history keeps that something
    happened, when and by whom, never what a forgotten memory said. Returns events scrubbed."""
    return (
        MemoryEvent.objects.filter(user=user, memory_ref__in=memory_ids)
        .exclude(old_content="", new_content="")
        .update(old_content="", new_content="")
    )


def forget(
    *,
    user: Any,
    memory_id: int,
    actor: str = MemoryEvent.Actor.USER,
    source_message_id: int | None = None,
) -> None:
    """Delete a memory: gone from recall at once, and its words gone from its history.

    Whoever deletes it (the person, the extractor for a contradicted fact, an admin), the
    `deleted` event and every earlier event of the memory keep no text. While a memory lives,
    its history keeps the old text of each correction.
    """
    with transaction.atomic():
        memory = _locked(user, memory_id)
        scrub_history(user=user, memory_ids=[memory.pk])
        _event(memory, MemoryEvent.Action.DELETED, actor, source=source_message_id)
        memory.delete()


def forget_all(*, user: Any) -> int:
    """Delete every memory, summary and entity of the person and their histories; returns
    the number of memories."""
    from memory.models import Entity, EntityEvent

    with transaction.atomic():
        # The total would also count the cascaded "memories used" links of chat messages.
        _, per_model = Memory.objects.for_user(user).delete()
        MemoryEvent.objects.filter(user=user).delete()
        ConversationSummary.objects.filter(user=user).delete()
        Entity.objects.filter(user=user).delete()
        EntityEvent.objects.filter(user=user).delete()
    return per_model.get(Memory._meta.label, 0)


def forget_conversation(*, user: Any, conversation_id: int) -> int:
    """A conversation was deleted: its summary goes, and the memories learned in it stay
    (they are the person's facts) without its words or links to it. Returns the memories
    that lost their quote. Call inside the transaction that deletes the conversation."""
    ConversationSummary.objects.filter(user=user, conversation_id=conversation_id).delete()
    return (
        Memory.objects.for_user(user)
        .filter(source_conversation_id=conversation_id)
        .update(
            source_excerpt="",
            source_message_id=None,
            source_conversation_id=None,
            source_deleted=True,
        )
    )


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
    """Create or replace the rolling summary of a conversation (embedded for recall).

    The text goes through the privacy filter first: secrets become placeholders and
    sentences that try to instruct the assistant are dropped (a summary is recalled into
    later prompts). Raises InvalidMemory, storing nothing, when nothing is left.
    """
    content = privacy.clean_text(" ".join(content.split()))[:4000]
    if not content.strip():
        raise InvalidMemory("Nothing is left of this summary once secrets and orders are removed.")
    conversation_title = privacy.redact(privacy.without_injections(conversation_title))[0]
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
        """One line per item, "- (kind) text", every text made inert (`as_prompt_data`)."""
        lines = [f"- ({item.kind}) {as_prompt_data(item.content)}" for item in self.memories]
        lines += [
            f"- (earlier conversation) {as_prompt_data(item.content)}" for item in self.summaries
        ]
        lines += [f"- (about {as_prompt_data(item.content)})" for item in self.entities]
        return "\n".join(lines)

    def second_person_lines(self, limit: int | None = None) -> list[str]:
        """The items as short facts told to the person ("You live in Porto."), made inert.

        What a small model follows best (bench/grounding.py): it repeats "You live in …"
        when asked "Where do I live?", and ignores a marked block of first-person notes.
        The `limit` best-scored items, the best last: nearest the question it answers.
        """
        best = sorted(self.items, key=lambda item: (-item.score, item.id))[:limit]
        lines = []
        for item in reversed(best):
            if item.source == "entity":
                lines.append(f"About {item.content}.")
            else:
                lines.append(second_person(item.content))
        return [as_prompt_data(line) for line in lines if line]

    @property
    def entities(self) -> list[RecalledItem]:
        return [item for item in self.items if item.source == "entity"]


# --- Memory text in prompts ---

# Whitespace of every kind (a newline could start a fake section or role line).
_SPACE_RE = re.compile(r"[\s\u2028\u2029\x85]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# Llama-2/Mistral instruction markers and the like, which some templates treat as structure.
_MARKER_RE = re.compile(r"\[/?(?:INST|SYS|SYSTEM|USER|ASSISTANT)\]|<<|>>", re.IGNORECASE)


def as_prompt_data(text: str) -> str:
    """Memory text made inert for a prompt: one line, no markup, no chat-template tokens.

    Angle brackets become look-alikes, so no memory can close or open a `<memories>` block or
    write a chat-template token (`<|im_start|>`, `</s>`); newlines and control characters go,
    so none can start a line of its own (a fake "System:" section or bullet). The words stay
    readable for the model and the person.
    """
    text = _CONTROL_RE.sub("", _SPACE_RE.sub(" ", text))
    text = _MARKER_RE.sub(lambda m: m.group().replace("[", "(").replace("]", ")"), text)
    return text.replace("<", "\u2039").replace(">", "\u203a").strip()


_PERSON_SWAPS = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
    "we": "you", "us": "you", "our": "your", "ours": "yours", "ourselves": "yourselves",
    "i'm": "you're", "i've": "you've", "i'd": "you'd", "i'll": "you'll",
    "we're": "you're", "we've": "you've", "we'd": "you'd", "we'll": "you'll",
}  # fmt: skip
_PERSON_RE = re.compile(
    r"\b(?:i am|i was|we are|we were|" + "|".join(sorted(_PERSON_SWAPS, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)  # fmt: skip


def second_person(text: str) -> str:
    """A first-person memory told back to the person: "I am from Porto" → "You are from Porto"."""

    def swap(match: re.Match[str]) -> str:
        word = match.group().lower().replace("\u2019", "'")
        if word in ("i am", "we are"):
            return "you are"
        if word in ("i was", "we were"):
            return "you were"
        return _PERSON_SWAPS[word]

    text = _PERSON_RE.sub(swap, " ".join(text.split()))
    text = re.sub(r"([.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text[:1].upper() + text[1:]


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
