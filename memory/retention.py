"""Retention: memories expire per their kind's policy, and per-person caps are enforced.

Idempotent and catch-up by construction: each run removes whatever is expired or over cap
*now*, however long the job was down. Pinned memories never expire and are never trimmed.
Each removal is recorded as an `expired` event without the text (the point is not to keep it),
and the text of the memory's earlier events goes too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from memory.models import (
    Entity,
    EntityEvent,
    Memory,
    MemoryEvent,
    RetentionPolicy,
    RetentionRun,
)

BATCH_SIZE = 1000


def policy_for(kind: str) -> RetentionPolicy | None:
    return RetentionPolicy.objects.filter(kind=kind).first()


def expiry_for(kind: str, base: datetime) -> datetime | None:
    """When a memory of `kind` last changed or confirmed at `base` expires (None: never)."""
    policy = policy_for(kind)
    if policy is None or not policy.ttl_days:
        return None
    return base + timedelta(days=policy.ttl_days)


def apply_policy(*, kind: str) -> int:
    """Recompute `expires_at` of every memory of `kind` after its policy changed."""
    policy = policy_for(kind)
    memories = Memory.objects.filter(kind=kind)
    if policy is None or not policy.ttl_days:
        return memories.exclude(expires_at=None).update(expires_at=None)
    base = Greatest(F("updated_at"), Coalesce(F("confirmed_at"), F("updated_at")))
    return memories.update(expires_at=base + Value(timedelta(days=policy.ttl_days)))


def _remove(ids: list[int], counts: dict[str, int], kind: str, **still: Any) -> set[int]:
    """Remove those of `ids` not locked by someone else (and still matching `still`)."""
    from memory import services  # services imports this module (expiry_for)

    with transaction.atomic():
        # The people first, as a forget or an extraction locks them, so taking the words out
        # of their other memories' recall keys never waits on one of those (nor deadlocks);
        # a person busy right now keeps their memories until the next run.
        owners = set(Memory.objects.filter(pk__in=ids).values_list("user_id", flat=True))
        free = list(
            get_user_model()
            .objects.select_for_update(skip_locked=True)
            .filter(pk__in=owners)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        rows = list(
            Memory.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, user_id__in=free, pinned=False, **still)
            .values_list("pk", "user_id", "content", "source_message_id", "source_excerpt")
        )
        # The words of every earlier event go with the memory (added, updated, pinned).
        MemoryEvent.objects.filter(memory_ref__in=[pk for pk, *_ in rows]).exclude(
            old_content="", new_content=""
        ).update(old_content="", new_content="")
        MemoryEvent.objects.bulk_create(
            MemoryEvent(
                user_id=user_id,
                memory_ref=pk,
                kind=kind,
                action=MemoryEvent.Action.EXPIRED,
                actor=MemoryEvent.Actor.RETENTION,
            )
            for pk, user_id, *_ in rows
        )
        # Nor do the other memories that borrowed its words as recall keys keep them.
        texts: dict[int, list[str]] = {}
        for _, user_id, content, _, _ in rows:
            texts.setdefault(user_id, []).append(content)
        for user_id, contents in texts.items():
            services.unlink_recall_keys(user_id=user_id, texts=contents)
        # Nor the quotes of those learned from the same message its sentences.
        going = [pk for pk, *_ in rows]
        for _, user_id, content, message_id, excerpt in rows:
            services.unquote(
                user_id=user_id,
                source_message_id=message_id,
                excerpt=excerpt,
                content=content,
                forgotten=going,
                actor=MemoryEvent.Actor.RETENTION,
            )
        Memory.objects.filter(pk__in=[pk for pk, *_ in rows]).delete()
    counts[kind] = counts.get(kind, 0) + len(rows)
    return {pk for pk, *_ in rows}


def run_retention(
    *, now: datetime | None = None, trigger: str = "schedule", batch_size: int = BATCH_SIZE
) -> RetentionRun:
    """Remove expired memories, then trim people over a kind's cap; records the run."""
    now = now or timezone.now()
    run = RetentionRun.objects.create(started_at=now, trigger=trigger)
    expired: dict[str, int] = {}
    trimmed: dict[str, int] = {}
    for policy in RetentionPolicy.objects.all():
        if policy.ttl_days:
            # Rows locked by someone else (being edited) are skipped, not waited for or
            # retried in a loop: the next run takes them.
            skipped: set[int] = set()
            while True:
                ids = list(
                    Memory.objects.filter(kind=policy.kind, pinned=False, expires_at__lte=now)
                    .exclude(pk__in=skipped)
                    .order_by("expires_at")
                    .values_list("pk", flat=True)[:batch_size]
                )
                if not ids:
                    break
                # Still expired once locked: an edit or confirmation meanwhile restarts it.
                removed = _remove(ids, expired, policy.kind, expires_at__lte=now)
                skipped.update(set(ids) - removed)
        if policy.max_per_user:
            over = (
                Memory.objects.filter(kind=policy.kind)
                .values("user_id")
                .annotate(n=Count("id"))
                .filter(n__gt=policy.max_per_user)
            )
            for row in over:
                excess = row["n"] - policy.max_per_user
                # Least useful first: low importance, never or long unused, oldest.
                ids = list(
                    Memory.objects.filter(kind=policy.kind, user_id=row["user_id"], pinned=False)
                    .order_by(
                        "importance",
                        F("last_used_at").asc(nulls_first=True),
                        "updated_at",
                        "id",
                    )
                    .values_list("pk", flat=True)[:excess]
                )
                for start in range(0, len(ids), batch_size):
                    _remove(ids[start : start + batch_size], trimmed, policy.kind)
    stale = _remove_stale_entities(now)
    if stale:
        expired["entity"] = stale
    # Memories that waited for the person's review past MEMORY_REVIEW_TTL_HOURS go unread.
    from memory import review  # review builds on the services, which build on this module

    unreviewed = review.expire_pending(now=now)
    if unreviewed:
        expired["pending review"] = unreviewed
    run.expired, run.trimmed, run.finished_at = expired, trimmed, timezone.now()
    run.save(update_fields=["expired", "trimmed", "finished_at"])
    return run


def _remove_stale_entities(now: datetime) -> int:
    """Entities follow the fact policy: unlinked and unchanged for its TTL, they go."""
    policy = policy_for(Memory.Kind.FACT)
    if policy is None or not policy.ttl_days:
        return 0
    stale = Entity.objects.filter(
        updated_at__lte=now - timedelta(days=policy.ttl_days), memories__isnull=True
    )
    with transaction.atomic():
        ids = list(stale.values_list("pk", flat=True))
        # Names and values go from the entities' history too.
        EntityEvent.objects.filter(entity_ref__in=ids).exclude(
            attribute="", old_value="", new_value=""
        ).update(attribute="", old_value="", new_value="")
        count, _ = Entity.objects.filter(pk__in=ids).delete()
    return count


def expiring_soon(*, days: int = 7, now: datetime | None = None) -> dict[str, int]:
    """How many memories per kind expire within `days` (for the admin console; no text)."""
    now = now or timezone.now()
    rows = (
        Memory.objects.filter(
            pinned=False, expires_at__gt=now, expires_at__lte=now + timedelta(days=days)
        )
        .values("kind")
        .annotate(n=Count("id"))
    )
    return {row["kind"]: row["n"] for row in rows}
