"""Chat background tasks: titles, learning from messages, summaries, and their sweeps.

Each task takes ids, calls one service, owns its retry policy, and is safe to run twice.
Retries are for transport failures only (the model could not be reached, timed out or rate
limited us), with a cap: an answer the model did give, even one that is not valid JSON, is a
result. The sweeps never enqueue work that is already queued or running (see `QueuedOnce`).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.core.cache import cache

from chat import services
from config import llm

# The endpoint was unreachable, slow, rate limited or failed (5xx): worth asking again later.
# A 4xx or an unreadable answer would come back the same.
TRANSPORT_ERRORS = (llm.LLMUnavailable, llm.LLMTimeout, llm.LLMRateLimited, llm.LLMServerError)


def claim_key(task_name: str, object_id: Any) -> str:
    return f"queued:{task_name}:{object_id}"


def claim_seconds() -> int:
    # A queued task may wait behind a backlog, and a task whose worker died is redelivered
    # after the visibility timeout: a claim lasts as long, so the sweep adds no copy meanwhile
    # and still picks the work up if its message was lost with Redis.
    return int(settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"])


class QueuedOnce(Task):
    """A task about one object whose queued copy is marked in Redis.

    Every enqueue (the first one on commit, each retry, a sweep's) sets a short-lived claim
    `queued:<task>:<id>` (removed again if the broker refuses the message); the task removes
    it when it has finished its work. A sweep enqueues only ids without a claim, so a backlog
    is never multiplied. The claim is left to expire after a final failure: the sweep retries that
    work an hour later, not every two minutes.
    """

    # celery-types spells out every publishing option; they are passed through unchanged.
    def apply_async(  # type: ignore[override]
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> Any:
        if not args:
            return super().apply_async(args, kwargs, **options)
        key = claim_key(self.name, args[0])
        # Claimed before publishing, so a fast worker's release cannot come first. A claim
        # that cannot be written (Redis away) only costs a possible duplicate, which the
        # task's own unique key turns into a no-op.
        with contextlib.suppress(Exception):
            cache.set(key, 1, timeout=claim_seconds())
        try:
            return super().apply_async(args, kwargs, **options)
        except Exception:
            with contextlib.suppress(Exception):
                cache.delete(key)  # nothing was queued: leave the work to the sweep
            raise


def release_claim(task: Task, object_id: Any) -> None:
    with contextlib.suppress(Exception):
        cache.delete(claim_key(task.name, object_id))


def unclaimed(task: Task, object_ids: list[int]) -> list[int]:
    """The ids in `object_ids` with no copy of `task` queued or running."""
    if not object_ids:
        return []
    keys = {claim_key(task.name, object_id): object_id for object_id in object_ids}
    claimed = cache.get_many(list(keys))
    return [object_id for key, object_id in keys.items() if key not in claimed]


@shared_task(
    bind=True,
    base=QueuedOnce,
    autoretry_for=TRANSPORT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=3,
)
def generate_title_task(self: Task, conversation_id: int) -> None:
    services.generate_title(conversation_id=conversation_id)
    release_claim(self, conversation_id)


@shared_task(
    bind=True,
    base=QueuedOnce,
    autoretry_for=TRANSPORT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=4,
)
def extract_memories_task(self: Task, message_id: int) -> None:
    services.learn_from_message(message_id=message_id)
    release_claim(self, message_id)


@shared_task(
    bind=True,
    base=QueuedOnce,
    autoretry_for=TRANSPORT_ERRORS,
    retry_backoff=10,
    retry_backoff_max=300,
    max_retries=3,
)
def summarize_conversation_task(self: Task, conversation_id: int) -> None:
    services.summarize_conversation(conversation_id=conversation_id)
    release_claim(self, conversation_id)


@shared_task
def sweep_unlearned_messages_task() -> int:
    """Enqueue extractions that never ran (a broker message lost with a crashed Redis, or a
    turn whose enqueue failed), unless a copy is already queued or running."""
    ids = services.unlearned_message_ids(older_than=timedelta(minutes=2), within=timedelta(days=2))
    missing = unclaimed(extract_memories_task, ids)
    for message_id in missing:
        extract_memories_task.delay(message_id)
    return len(missing)


@shared_task
def fail_interrupted_replies_task() -> int:
    """Mark replies orphaned mid-stream by a crashed server as failed, so they can be retried."""
    return services.fail_interrupted_replies(older_than=timedelta(minutes=15))


@shared_task
def sweep_summaries_task() -> int:
    due = services.conversations_to_summarize(
        idle=timedelta(minutes=settings.SUMMARY_IDLE_MINUTES), every=settings.SUMMARY_EVERY_MESSAGES
    )
    missing = unclaimed(summarize_conversation_task, due)
    for conversation_id in missing:
        summarize_conversation_task.delay(conversation_id)
    return len(missing)
