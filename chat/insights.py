"""Aggregate figures for staff: recall latency, memories per reply, extraction outcomes.

Numbers only, across everyone, never memory or message text.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

RECALL_SQL = """
SELECT date_trunc('day', m.created_at)::date AS day,
       count(*) AS replies,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (m.recall->>'ms')::float8) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY (m.recall->>'ms')::float8) AS p95,
       avg((SELECT count(*) FROM chat_message_memories_used u WHERE u.message_id = m.id)) AS used
FROM chat_message m
WHERE m.role = 'assistant' AND m.recall ? 'ms' AND m.created_at >= %(since)s
GROUP BY 1 ORDER BY 1 DESC
"""

EXTRACTION_SQL = """
SELECT date_trunc('day', created_at)::date AS day, count(*) AS runs,
       sum(added), sum(updated), sum(deleted), sum(unchanged), sum(rejected),
       count(*) FILTER (WHERE status = 'skipped'), avg(llm_calls)
FROM memory_extractionrun
WHERE created_at >= %(since)s
GROUP BY 1 ORDER BY 1 DESC
"""


def daily_figures(*, days: int = 14) -> dict[str, list[dict[str, Any]]]:
    since = timezone.now() - timedelta(days=days)
    with connection.cursor() as cursor:
        cursor.execute(RECALL_SQL, {"since": since})
        recall = [
            {"day": d, "replies": n, "p50": p50, "p95": p95, "memories_per_reply": used}
            for d, n, p50, p95, used in cursor.fetchall()
        ]
        cursor.execute(EXTRACTION_SQL, {"since": since})
        keys = ["day", "runs", "added", "updated", "deleted", "unchanged", "rejected"]
        keys += ["skipped", "llm_calls"]
        extraction = [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]
    return {"recall": recall, "extraction": extraction}
