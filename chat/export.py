"""Export: everything Mnemo holds about a person, as one machine-readable JSON document."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Prefetch
from django.utils import timezone

from chat.models import Conversation, Message
from memory import exposure
from memory.models import (
    ConversationSummary,
    Entity,
    EntityEvent,
    ExtractionRun,
    Memory,
    MemoryEvent,
    PendingMemory,
)

FORMAT_VERSION = 1


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_everything(*, user: Any) -> dict[str, Any]:
    """The person's profile, memories with provenance and history, summaries, conversations
    with every message, and extraction runs. Read-only; every query scoped to the user."""
    rules = exposure.rules_for(user=user)
    events_by_memory: dict[int, list[dict[str, Any]]] = {}
    events = MemoryEvent.objects.filter(user=user).order_by("created_at", "id")
    for event in events:
        events_by_memory.setdefault(event.memory_ref, []).append(
            {
                "action": event.action,
                "actor": event.actor,
                "old_content": event.old_content,
                "new_content": event.new_content,
                "source_message_id": event.source_message_id,
                "at": _time(event.created_at),
            }
        )
    memories = [
        {
            "id": memory.pk,
            "kind": memory.kind,
            "content": memory.content,
            "importance": memory.importance,
            "pinned": memory.pinned,
            # Set on the memory (true/false), or null to follow the rules below.
            "local_only_setting": memory.local_only,
            "local_only": exposure.memory_reason(memory, rules) is not None,
            "category": exposure.category_of(memory.content),
            "source": memory.provenance(),
            "created_at": _time(memory.created_at),
            "updated_at": _time(memory.updated_at),
            "last_used_at": _time(memory.last_used_at),
            "confirmed_at": _time(memory.confirmed_at),
            "confirmations": memory.confirmations,
            "expires_at": _time(memory.expires_at),
            "history": events_by_memory.pop(memory.pk, []),
        }
        for memory in Memory.objects.for_user(user).order_by("id")
    ]
    # History of memories that no longer exist (deleted or expired) is theirs too.
    forgotten = [
        {"memory_id": memory_id, "history": history}
        for memory_id, history in sorted(events_by_memory.items())
    ]
    messages = Message.objects.for_user(user).order_by("created_at", "id")
    conversations = [
        {
            "id": conversation.pk,
            "title": conversation.title,
            "incognito": conversation.incognito,
            "endpoint": exposure.for_conversation(conversation).name,
            "created_at": _time(conversation.created_at),
            "updated_at": _time(conversation.updated_at),
            "messages": [
                {
                    "id": message.pk,
                    "role": message.role,
                    "content": message.content,
                    "status": message.status,
                    "error": message.error,
                    "finish_reason": message.finish_reason,
                    "model": message.model,
                    "prompt_tokens": message.prompt_tokens,
                    "completion_tokens": message.completion_tokens,
                    "created_at": _time(message.created_at),
                    "memories_used": sorted(m.pk for m in message.memories_used.all()),
                    "recall": message.recall,
                    # Said while memory was on (and not incognito): what may be learned.
                    "learnable": message.learnable,
                    "endpoint": message.endpoint,
                }
                for message in conversation.messages.all()
            ],
        }
        for conversation in Conversation.objects.for_user(user)
        .order_by("created_at", "id")
        .prefetch_related(Prefetch("messages", queryset=messages.prefetch_related("memories_used")))
    ]
    summaries = [
        {
            "id": summary.pk,
            "conversation_id": summary.conversation_id,
            "conversation_title": summary.conversation_title,
            "content": summary.content,
            "message_count": summary.message_count,
            "local_only": rules.reason(kind=exposure.SUMMARY, content=summary.content) is not None,
            "updated_at": _time(summary.updated_at),
        }
        for summary in ConversationSummary.objects.filter(user=user)
        .exclude(content="")
        .order_by("id")
    ]
    entity_events: dict[int, list[dict[str, Any]]] = {}
    for change in EntityEvent.objects.filter(user=user).order_by("created_at", "id"):
        entity_events.setdefault(change.entity_ref, []).append(
            {
                "action": change.action,
                "actor": change.actor,
                "attribute": change.attribute,
                "old_value": change.old_value,
                "new_value": change.new_value,
                "source_message_id": change.source_message_id,
                "at": _time(change.created_at),
            }
        )
    entities = [
        {
            "id": entity.pk,
            "name": entity.name,
            "type": entity.type,
            "attributes": entity.attributes,
            "memory_ids": sorted(m.pk for m in entity.memories.all()),
            "source_message_id": entity.source_message_id,
            "created_at": _time(entity.created_at),
            "updated_at": _time(entity.updated_at),
            "history": entity_events.pop(entity.pk, []),
        }
        for entity in Entity.objects.filter(user=user).order_by("id").prefetch_related("memories")
    ]
    runs = [
        {
            "message_id": run.source_message_id,
            "status": run.status,
            "added": run.added,
            "updated": run.updated,
            "deleted": run.deleted,
            "unchanged": run.unchanged,
            "rejected": run.rejected,
            "at": _time(run.created_at),
        }
        for run in ExtractionRun.objects.filter(user=user).order_by("id")
    ]
    return {
        "format": "mnemo-export",
        "version": FORMAT_VERSION,
        "exported_at": _time(timezone.now()),
        "profile": {
            "email": user.email,
            "display_name": user.display_name,
            "date_joined": _time(user.date_joined),
            "memory_enabled": user.memory_enabled,
            "ask_before_remembering": user.ask_before_remembering,
            # What stays on local models: each memory kind, summaries and health.
            "local_only": rules.as_dict(),
        },
        "memories": memories,
        # Proposed while "Ask me before remembering" was on; never used until approved.
        "pending_memories": _pending(user),
        "forgotten_memory_history": forgotten,
        "summaries": summaries,
        "entities": entities,
        "forgotten_entity_history": [
            {"entity_id": entity_id, "history": history}
            for entity_id, history in sorted(entity_events.items())
        ],
        "conversations": conversations,
        "extraction_runs": runs,
    }


def _pending(user: Any) -> list[dict[str, Any]]:
    """What waits for the person's review, marked pending (not memories until approved)."""
    return [
        {
            "id": item.pk,
            "status": "pending",
            "operation": item.operation,
            "kind": item.kind,
            "content": item.content,
            "target_memory_id": item.target_id,
            "source": item.provenance(),
            "entities": item.entities,
            "created_at": _time(item.created_at),
            "expires_at": _time(item.expires_at),
        }
        for item in PendingMemory.objects.filter(user=user).order_by("id")
    ]
