"""Memory background tasks: retention."""

from __future__ import annotations

from celery import shared_task

from memory import retention


@shared_task
def run_retention_task(trigger: str = "schedule") -> int:
    """Remove expired and over-cap memories (safe to run twice, catches up after downtime)."""
    return retention.run_retention(trigger=trigger).removed
