"""`/healthz`: up or down for anyone (200/503); for staff, the state of every part as JSON."""

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

from config import endpoints, llm
from config.celery import app as celery_app

# Seconds an LLM endpoint has to answer `GET /v1/models`. llama.cpp's server answers it only
# between two generations; an endpoint that accepts the connection but is still busy after
# this is up (and busy), not down: health must not depend on how much work is queued.
LLM_CHECK_TIMEOUT = 2.0


def check_database(*, detailed: bool) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        (server_version,) = cursor.fetchone()
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return {"ok": False, "postgres": server_version, "error": "pgvector is not installed"}
    return {"ok": True, "postgres": server_version, "pgvector": row[0]}


def check_redis(*, detailed: bool) -> dict[str, Any]:
    get_redis_connection("default").ping()
    return {"ok": True}


def check_broker(*, detailed: bool) -> dict[str, Any]:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0, timeout=2)
    return {"ok": True}


def check_workers(*, detailed: bool) -> dict[str, Any]:
    # Up/down needs one answer; the staff view waits for every worker to list their names.
    replies = celery_app.control.ping(timeout=1.0, limit=None if detailed else 1) or []
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return {"ok": False, "workers": [], "error": "no Celery worker answered"}
    return {"ok": True, "workers": workers}


def _check_endpoint(*, background: bool) -> dict[str, Any]:
    try:
        models = llm.list_models(timeout=LLM_CHECK_TIMEOUT, background=background)
    except llm.LLMBusy:
        return {"ok": True, "busy": True}
    return {"ok": True, "models": models}


def check_llm(*, detailed: bool) -> dict[str, Any]:
    result = {
        **_check_endpoint(background=False),
        "base_url": settings.LLM_BASE_URL,
        "chat_model": settings.LLM_CHAT_MODEL,
        # What people may choose, and which of them counts as local (not probed: a hosted
        # API on every health check would cost money and time).
        "endpoints": [
            {"name": e.name, "local": e.local, "model": e.chat.model}
            for e in endpoints.all_endpoints()
        ],
    }
    background_url = settings.LLM_BACKGROUND_BASE_URL
    if background_url and background_url != settings.LLM_BASE_URL:
        try:
            background = _check_endpoint(background=True)
        except llm.LLMError as exc:
            background = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        result["background"] = {**background, "base_url": background_url}
        result["ok"] = result["ok"] and background["ok"]
    return result


CHECKS: dict[str, Callable[..., dict[str, Any]]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "workers": check_workers,
    "llm": check_llm,
}


def run_checks(*, detailed: bool = True) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            result = check(detailed=detailed)
        except Exception as exc:  # each failure is reported, never raised
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = result
    return results


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 {"status": "ok"} or 503 {"status": "down"}; staff also see every check's details.

    Anonymous callers (load balancers, uptime monitors) learn nothing else: versions, worker
    host names and endpoint URLs help an attacker more than a monitor.
    """
    detailed = bool(request.user.is_authenticated and request.user.is_staff)
    results = run_checks(detailed=detailed)
    healthy = all(result["ok"] for result in results.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "down"}
    if detailed:
        body["checks"] = results
    response = JsonResponse(body, status=200 if healthy else 503)
    # A 503 here is an answer, not a server error: keep Django from logging an ERROR line
    # for each one while the stack starts or a part is away.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
