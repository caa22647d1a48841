"""Chat background tasks: conversation titles."""

from __future__ import annotations

from celery import shared_task

from chat import services
from config import llm


@shared_task(
    autoretry_for=(llm.LLMUnavailable, llm.LLMTimeout, llm.LLMRateLimited),
    retry_backoff=True,
    max_retries=3,
)
def generate_title_task(conversation_id: int) -> None:
    services.generate_title(conversation_id=conversation_id)
