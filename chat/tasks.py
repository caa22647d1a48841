"""Chat background tasks: titles, learning from messages, summaries, and their sweeps.

Each task takes ids, calls one service, owns its retry policy, and is safe to run twice.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from chat import services
from config import llm

RETRYABLE = (llm.LLMUnavailable, llm.LLMTimeout, llm.LLMRateLimited, llm.LLMBadResponse)


@shared_task(autoretry_for=RETRYABLE, retry_backoff=True, max_retries=3)
def generate_title_task(conversation_id: int) -> None:
    services.generate_title(conversation_id=conversation_id)


@shared_task(autoretry_for=(llm.LLMError,), retry_backoff=5, retry_backoff_max=300, max_retries=6)
def extract_memories_task(message_id: int) -> None:
    services.learn_from_message(message_id=message_id)


@shared_task(autoretry_for=(llm.LLMError,), retry_backoff=10, max_retries=4)
def summarize_conversation_task(conversation_id: int) -> None:
    services.summarize_conversation(conversation_id=conversation_id)


@shared_task
def sweep_unlearned_messages_task() -> int:
    """Re-enqueue extractions that never ran (a broker message lost with a crashed Redis)."""
    ids = services.unlearned_message_ids(older_than=timedelta(minutes=2), within=timedelta(days=2))
    for message_id in ids:
        extract_memories_task.delay(message_id)
    return len(ids)


@shared_task
def fail_interrupted_replies_task() -> int:
    """Mark replies orphaned mid-stream by a crashed server as failed, so they can be retried."""
    return services.fail_interrupted_replies(older_than=timedelta(minutes=15))


@shared_task
def sweep_summaries_task() -> int:
    due = services.conversations_to_summarize(
        idle=timedelta(minutes=settings.SUMMARY_IDLE_MINUTES), every=settings.SUMMARY_EVERY_MESSAGES
    )
    for conversation_id in due:
        summarize_conversation_task.delay(conversation_id)
    return len(due)
