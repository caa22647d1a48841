"""Review before saving: what extraction learns waits for the person's yes, edit or no.

With "Ask me before remembering" on, extraction runs as always (the deterministic extractor,
the model, every privacy guard, reconciliation) but `hold` stores its plans as PendingMemory
rows instead of applying them. A separate table keeps them out of everything that reads
Memory: recall, the prompt, the memory list, counts, retention caps and entities.

Approving applies the plan through the memory services, so history starts then. Rejecting
or expiring deletes the row; no event, log or other row ever held its words. Every query is
scoped to the person in SQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from memory import embeddings, privacy, services, statements
from memory import entities as entity_services
from memory.models import Memory, MemoryEvent, PendingMemory

if TYPE_CHECKING:
    from memory.extraction import EntityCandidate, Plan

logger = logging.getLogger(__name__)

Operation = PendingMemory.Operation


class PendingGone(services.MemoryRequestError):
    """Approved, rejected or expired meanwhile (another tab, the chat and the page)."""

    status = 404


class TargetChanged(services.MemoryRequestError):
    """The memory an update or deletion would change was edited since it was proposed."""

    status = 409


# --- Holding extraction's plans ---

_OPERATIONS = {"add": Operation.ADD, "update": Operation.UPDATE, "delete": Operation.DELETE,
               "none": Operation.CONFIRM}  # fmt: skip


def _slot(text: str) -> str | None:
    return next((s.slot for s in statements.read(text).statements if s.slot), None)


def _plain(text: str) -> str:
    return " ".join(text.lower().rstrip(".! ").split())


def _named(entities: list[Any], text: str) -> list[dict[str, Any]]:
    """The entities (EntityCandidate or their JSON) whose name `text` mentions, as JSON."""
    lowered = text.casefold()
    found = []
    for entity in entities:
        data = entity if isinstance(entity, dict) else {
            "name": entity.name, "type": entity.type, "attributes": entity.attributes,
        }  # fmt: skip
        if str(data.get("name", "")).casefold() in lowered:
            found.append(data)
    return found


def hold(
    *,
    user: Any,
    plans: list[Plan],
    entities: list[EntityCandidate],
    source_message_id: int,
    source_conversation_id: int | None,
    excerpt: str,
) -> list[int]:
    """Store extraction's plans for one message as pending items; returns their ids.

    Called by extraction inside its transaction (the person is locked). A plan repeating an
    item already waiting is not stored twice; a new value for a slot an item waiting fills
    ("I live in Berlin" after "I live in Lisbon", both unreviewed) replaces that item. The
    turn's entities are kept with the items that name them, and learned only on approval.
    """
    from memory.extraction import KIND_IMPORTANCE  # extraction imports this module

    now = timezone.now()
    expires_at = now + timedelta(hours=settings.MEMORY_REVIEW_TTL_HOURS)
    waiting = list(
        PendingMemory.objects.for_user(user)
        .waiting()
        .filter(operation__in=[Operation.ADD, Operation.UPDATE])
        .values_list("pk", "content", "target_id")
    )
    created: list[int] = []
    for plan in plans:
        target = plan.memory
        operation = _OPERATIONS.get(plan.action, Operation.ADD)
        if target is None:
            operation = Operation.ADD  # as extraction's _apply: no target, an addition
        content = plan.candidate.content
        if operation in (Operation.ADD, Operation.UPDATE):
            text, slot = _plain(content), _slot(content)
            target_id = target.pk if target is not None and operation == Operation.UPDATE else None
            if any(_plain(c) == text and t == target_id for _, c, t in waiting):
                continue  # already waiting for the person's answer
            superseded = [pk for pk, c, _ in waiting if slot and _slot(c) == slot]
            if superseded:
                PendingMemory.objects.for_user(user).filter(pk__in=superseded).delete()
                waiting = [w for w in waiting if w[0] not in superseded]
        kind = plan.candidate.kind if target is None else target.kind
        item = PendingMemory.objects.create(
            user=user,
            operation=operation,
            kind=plan.candidate.kind if operation == Operation.ADD else kind,
            content=content,
            embedding=plan.candidate.embedding,
            importance=KIND_IMPORTANCE.get(Memory.Kind(plan.candidate.kind), 0.5),
            target_id=target.pk if target is not None and operation != Operation.ADD else None,
            target_updated_at=target.updated_at if target is not None else None,
            source_message_id=source_message_id,
            source_conversation_id=source_conversation_id,
            # Only the sentences of the message that say this item.
            source_excerpt=privacy.quote(excerpt, content),
            entities=[] if operation == Operation.DELETE else _named(entities, content),
            created_at=now,
            expires_at=expires_at,
        )
        created.append(item.pk)
        if operation in (Operation.ADD, Operation.UPDATE):
            waiting.append((item.pk, content, item.target_id))
    return created


# --- Reads ---


@dataclass(frozen=True)
class ReviewItem:
    """A pending item as the person sees it: what it would change, in words."""

    pending: PendingMemory
    # The memory it would change, as it reads now ("" when there is none, or it is gone).
    target_content: str
    target_exists: bool

    @property
    def pk(self) -> int:
        return self.pending.pk

    @property
    def applies_as(self) -> str:
        """What approving would do now: add, update, delete, confirm, or nothing."""
        operation = self.pending.operation
        if operation == Operation.ADD or self.target_exists:
            return str(operation)
        # The memory went meanwhile: its replacement or a repeat of it is added; a
        # deletion has nothing left to delete.
        return "nothing" if operation == Operation.DELETE else str(Operation.ADD)

    @property
    def question(self) -> str:
        """ "Replace 'I live in Lisbon' with 'I live in Berlin'?", and so on."""
        new, old = self.pending.content, self.target_content
        return {
            "add": f"Remember “{new}”?",
            "update": f"Replace “{old}” with “{new}”?",
            "delete": f"Forget “{old}”? (You said: “{new}”)",
            "confirm": f"You said again “{old}”. Keep it longer?",
            "nothing": f"You said “{new}”, but the memory it contradicts is already gone.",
        }[self.applies_as]


def with_targets(user: Any, items: list[PendingMemory]) -> list[ReviewItem]:
    """The items with the memories they would change, as those read now (one query)."""
    ids = {item.target_id for item in items if item.target_id}
    targets = dict(
        Memory.objects.for_user(user).live().filter(pk__in=ids).values_list("pk", "content")
        if ids
        else []
    )
    return [
        ReviewItem(
            pending=item,
            target_content=targets.get(item.target_id or 0, ""),
            target_exists=(item.target_id or 0) in targets,
        )
        for item in items
    ]


def pending_items(
    *, user: Any, source_message_id: int | None = None, conversation_id: int | None = None
) -> Any:
    """The person's items waiting for review, oldest first (of one message, or of one
    conversation, if given)."""
    items = PendingMemory.objects.for_user(user).waiting()
    if source_message_id is not None:
        items = items.filter(source_message_id=source_message_id)
    if conversation_id is not None:
        items = items.filter(source_conversation_id=conversation_id)
    return items.order_by("created_at", "id")


def pending_list(
    *, user: Any, source_message_id: int | None = None, conversation_id: int | None = None
) -> list[ReviewItem]:
    """pending_items as ReviewItems (at most 500: a page, not an unbounded list)."""
    items = pending_items(
        user=user, source_message_id=source_message_id, conversation_id=conversation_id
    )
    return with_targets(user, list(items[:500]))


def pending_for(*, user: Any, pending_id: int) -> ReviewItem:
    """Raises PendingGone for an item that is not the person's, or no longer waiting."""
    item = PendingMemory.objects.for_user(user).waiting().filter(pk=pending_id).first()
    if item is None:
        raise PendingGone(_GONE)
    return with_targets(user, [item])[0]


def pending_count(*, user: Any) -> int:
    return PendingMemory.objects.for_user(user).waiting().count()


# --- Answers ---

_GONE = "This is no longer waiting for review: it was answered elsewhere or has expired."


@dataclass(frozen=True)
class Applied:
    """What approving did: the memory added or changed (None after a deletion)."""

    applied: str  # add | update | delete | confirm | nothing
    memory: Memory | None
    pending_id: int = 0


def _locked(user: Any, pending_id: int) -> PendingMemory:
    item = (
        PendingMemory.objects.for_user(user)
        .waiting()
        .select_for_update()
        .filter(pk=pending_id)
        .first()
    )
    if item is None:
        raise PendingGone(_GONE)
    return item


def approve(
    *, user: Any, pending_id: int, content: str | None = None, kind: str | None = None
) -> Applied:
    """Apply a pending item, as proposed or with the person's edit (`content`, `kind`).

    One transaction: the item goes and the memory services write the change and its
    history (by the extractor as proposed, by the person when edited). An update, deletion
    or confirmation whose memory is gone applies as an addition (a deletion as nothing). One
    whose memory was edited since it was proposed raises TargetChanged (409) saying what the
    memory says now; the item then compares against that version, so approving again
    applies it. Raises PendingGone (404), or InvalidMemory (400) for an edit that is empty,
    too long, a secret or an instruction.
    """
    edited = None
    if content is not None:
        edited = services.clean_content(content)
    if kind is not None and kind not in Memory.Kind.values:
        raise services.InvalidMemory(f"Unknown kind '{kind}'.")
    vector = embeddings.embed_one(edited) if edited is not None else None
    conflict: str | None = None
    result = Applied("nothing", None)
    with transaction.atomic():
        item = _locked(user, pending_id)
        if edited is not None and edited == item.content:
            edited, vector = None, None  # saved unchanged: as proposed
        if item.operation == Operation.DELETE and (edited is not None or kind is not None):
            raise services.InvalidMemory(
                "A proposal to forget a memory cannot be edited: approve or reject it."
            )
        target = None
        if item.target_id is not None:
            target = Memory.objects.for_user(user).live().filter(pk=item.target_id).first()
        if (
            target is not None
            and item.operation in (Operation.UPDATE, Operation.DELETE)
            and item.target_updated_at is not None
            and target.updated_at != item.target_updated_at
        ):
            # Compare against this version from now on: approving again applies the item.
            PendingMemory.objects.filter(pk=item.pk).update(target_updated_at=target.updated_at)
            conflict = target.content
        else:
            result = replace(_apply(user, item, target, edited, vector, kind), pending_id=item.pk)
            item.delete()
    if conflict is not None:
        raise TargetChanged(
            f"The memory this would change was edited since: it now says “{conflict}”. "
            "Approve again to go ahead, or reject."
        )
    return result


def _apply(
    user: Any,
    item: PendingMemory,
    target: Memory | None,
    edited: str | None,
    vector: list[float] | None,
    kind: str | None,
) -> Applied:
    actor = MemoryEvent.Actor.USER if edited is not None else MemoryEvent.Actor.EXTRACTOR
    text = edited if edited is not None else item.content
    embedding = vector if vector is not None else list(item.embedding)
    if item.operation == Operation.DELETE:
        if target is None:
            return Applied("nothing", None)
        services.forget(
            user=user, memory_id=target.pk, actor=actor, source_message_id=item.source_message_id
        )
        return Applied("delete", None)
    if target is not None and item.operation == Operation.CONFIRM and edited is None:
        services.confirm(user=user, memory_id=target.pk, kind=target.kind)
        if kind is not None and kind != target.kind:
            services.update_memory(user=user, memory_id=target.pk, kind=kind, actor=actor)
        return Applied("confirm", Memory.objects.for_user(user).get(pk=target.pk))
    if target is not None and item.operation in (Operation.UPDATE, Operation.CONFIRM):
        memory = services.update_memory(
            user=user,
            memory_id=target.pk,
            content=text,
            kind=kind,
            actor=actor,
            source_message_id=item.source_message_id,
            source_excerpt=item.source_excerpt,
            embedding=embedding,
        )
        _learn_entities(user, item, memory)
        return Applied("update", memory)
    memory = services.remember(
        user=user,
        content=text,
        kind=kind or item.kind,
        importance=item.importance,
        actor=actor,
        source_message_id=item.source_message_id,
        source_conversation_id=item.source_conversation_id,
        source_excerpt=item.source_excerpt,
        embedding=embedding,
    )
    _learn_entities(user, item, memory)
    return Applied("add", memory)


def _learn_entities(user: Any, item: PendingMemory, memory: Memory) -> None:
    """The people, pets and places of an approved item that its final text still names."""
    for data in _named(item.entities, memory.content):
        try:
            entity, _ = entity_services.upsert_entity(
                user=user,
                name=str(data.get("name", "")),
                type=str(data.get("type") or "other"),
                attributes=data.get("attributes") or {},
                source_message_id=item.source_message_id,
            )
        except entity_services.InvalidEntity:
            continue
        entity.memories.add(memory.pk)


def _drop(items: QuerySet[PendingMemory]) -> int:
    """Delete these items, and their sentences from the quotes of the memories and items
    learned from the same message (`services.unquote`); returns how many went."""
    with transaction.atomic():
        said = list(items.values_list("user_id", "source_message_id", "source_excerpt", "content"))
        deleted, _ = items.delete()
        for user_id, message_id, excerpt, content in said:
            services.unquote(
                user_id=user_id, source_message_id=message_id, excerpt=excerpt, content=content
            )
    return deleted


def reject(*, user: Any, pending_id: int) -> None:
    """Drop a pending item: the row goes, and nothing else keeps its words."""
    deleted = _drop(PendingMemory.objects.for_user(user).filter(pk=pending_id))
    if not deleted:
        raise PendingGone(_GONE)


@dataclass
class Answered:
    """What answering many items at once did."""

    approved: list[Applied]
    # Items left waiting because their memory changed since (TargetChanged): id -> message.
    conflicts: dict[int, str]


def approve_all(*, user: Any, source_message_id: int | None = None) -> Answered:
    """Approve every waiting item (of one message, if given), oldest first.

    Each in its own transaction; an item whose memory changed meanwhile stays waiting and is
    reported, the others are applied. One answered elsewhere meanwhile is skipped.
    """
    answered = Answered(approved=[], conflicts={})
    for item in pending_list(user=user, source_message_id=source_message_id):
        try:
            answered.approved.append(approve(user=user, pending_id=item.pk))
        except TargetChanged as exc:
            answered.conflicts[item.pk] = exc.message
        except (PendingGone, services.MemoryGone):
            continue
        except services.InvalidMemory:
            # Its text no longer passes the guards (they may have grown since): not applied.
            reject(user=user, pending_id=item.pk)
    return answered


def reject_all(*, user: Any, source_message_id: int | None = None) -> int:
    """Drop every waiting item (of one message, if given); returns how many."""
    items = PendingMemory.objects.for_user(user)
    if source_message_id is not None:
        items = items.filter(source_message_id=source_message_id)
    return _drop(items)


# --- Erasure, deleted conversations, expiry ---


def forget_all_pending(*, user: Any) -> int:
    """Every pending item of the person goes (forget everything)."""
    deleted, _ = PendingMemory.objects.for_user(user).delete()
    return deleted


def forget_conversation(*, user: Any, conversation_id: int) -> int:
    """A conversation was deleted: its pending items stay for review, as its memories stay,
    without its words or links. Call inside the transaction that deletes it."""
    return (
        PendingMemory.objects.for_user(user)
        .filter(source_conversation_id=conversation_id)
        .update(
            source_excerpt="",
            source_message_id=None,
            source_conversation_id=None,
            source_deleted=True,
        )
    )


def drop_proposals_about(*, user: Any, memory_id: int) -> int:
    """A memory is forgotten: pending confirmations of it (which repeat its words) and
    deletions of it (nothing left to delete) go with it. A pending replacement stays: its
    text is the new value, and approving it adds that."""
    return _drop(
        PendingMemory.objects.for_user(user).filter(
            target_id=memory_id, operation__in=[Operation.CONFIRM, Operation.DELETE]
        )
    )


def expire_pending(*, now: datetime | None = None) -> int:
    """Delete every pending item past its review time (the retention run calls this)."""
    deleted = _drop(PendingMemory.objects.filter(expires_at__lte=now or timezone.now()))
    if deleted:
        logger.info("review: %s pending memories expired unreviewed", deleted)
    return deleted
