"""`/healthz`: the state of every part Mnemo depends on, as JSON (200 when all are up, else 503)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection

from config import llm
from config.celery import app as celery_app


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        (server_version,) = cursor.fetchone()
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return {"ok": False, "postgres": server_version, "error": "pgvector is not installed"}
    return {"ok": True, "postgres": server_version, "pgvector": row[0]}


def check_redis() -> dict[str, Any]:
    get_redis_connection("default").ping()
    return {"ok": True}


def check_broker() -> dict[str, Any]:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0, timeout=2)
    return {"ok": True}


def check_workers() -> dict[str, Any]:
    replies = celery_app.control.ping(timeout=1.0) or []
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return {"ok": False, "workers": [], "error": "no Celery worker answered"}
    return {"ok": True, "workers": workers}


def check_llm() -> dict[str, Any]:
    models = llm.list_models(timeout=3.0)
    return {
        "ok": True,
        "base_url": settings.LLM_BASE_URL,
        "chat_model": settings.LLM_CHAT_MODEL,
        "models": models,
    }


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "workers": check_workers,
    "llm": check_llm,
}


def run_checks() -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            result = check()
        except Exception as exc:  # each failure is reported, never raised
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = result
    return results


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    results = run_checks()
    healthy = all(result["ok"] for result in results.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "checks": results},
        status=200 if healthy else 503,
    )
