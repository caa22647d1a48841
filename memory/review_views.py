"""Review before saving, in the browser: the switch, and yes / edit / no on pending memories.

The same item answers from the chat's "Remember this?" notice (`from=chat`: the answer
replaces the item) and from the memory page's "Waiting for review" group (`from=page`: the
memory list is re-rendered). Refusals go into the item's error slot (static/js/mnemo.js).
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget, trigger_client_event

from accounts import services as account_services
from config.errors import DomainError
from memory import review, services
from memory import views as memory_views
from memory.models import Memory

TEMPLATE = "memory/_review.html"


def review_context(*, user: Any) -> dict[str, Any]:
    """What the memory page's "Waiting for review" group needs."""
    return {
        "pending": review.pending_list(user=user),
        "review_ttl_days": max(1, round(settings.MEMORY_REVIEW_TTL_HOURS / 24)),
    }


def _origin(request: HttpRequest) -> str:
    return "chat" if (request.POST or request.GET).get("from") == "chat" else "page"


def _refused(request: HttpRequest, exc: DomainError, pending_id: int | None) -> HttpResponse:
    target = f"#pending-{pending_id} .form-error" if pending_id else "#review-all-error"
    response = HttpResponse(exc.message, status=exc.status, content_type="text/plain")
    return reswap(retarget(response, target), "innerHTML")


def _message_of(request: HttpRequest, pending_id: int) -> int | None:
    """The message a pending item came from (read before answering it)."""
    try:
        return review.pending_for(
            user=request.user, pending_id=pending_id
        ).pending.source_message_id
    except review.PendingGone:
        return None


def _answered(
    request: HttpRequest, pending_id: int, applied: str, memory: Any, message_id: int | None
) -> HttpResponse:
    if _origin(request) == "chat":
        context = {"applied": applied, "memory": memory, "pending_id": pending_id}
        if message_id is not None:
            # What still waits from the same message: the "All n" row is refreshed with it.
            context["message_id"] = message_id
            context["pending"] = review.pending_list(
                user=request.user, source_message_id=message_id
            )
        response = render(request, f"{TEMPLATE}#chat-answer", context)
        return trigger_client_event(response, "memories-changed")
    return memory_views._list(request)


@login_required
@require_GET
def item(request: HttpRequest, pending_id: int) -> HttpResponse:
    """One pending item, as shown (`mode=view`) or as its edit form (`mode=edit`)."""
    try:
        found = review.pending_for(user=request.user, pending_id=pending_id)
    except review.PendingGone as exc:
        return _refused(request, exc, pending_id)
    return render(
        request,
        f"{TEMPLATE}#pending-item",
        {
            "item": found,
            "origin": _origin(request),
            "mode": "edit" if request.GET.get("mode") == "edit" else "view",
            "kinds": Memory.Kind.choices,
        },
    )


@login_required
@require_POST
def approve(request: HttpRequest, pending_id: int) -> HttpResponse:
    """Yes (no `content`), or edit-and-yes (`content`, and optionally `kind`)."""
    message_id = _message_of(request, pending_id)
    try:
        result = review.approve(
            user=request.user,
            pending_id=pending_id,
            content=request.POST.get("content"),
            kind=request.POST.get("kind") or None,
        )
    except services.MemoryRequestError as exc:
        return _refused(request, exc, pending_id)
    return _answered(request, pending_id, result.applied, result.memory, message_id)


@login_required
@require_POST
def reject(request: HttpRequest, pending_id: int) -> HttpResponse:
    message_id = _message_of(request, pending_id)
    # Answered elsewhere: it is not waiting any more either way.
    with contextlib.suppress(review.PendingGone):
        review.reject(user=request.user, pending_id=pending_id)
    return _answered(request, pending_id, "rejected", None, message_id)


@login_required
@require_POST
def answer_all(request: HttpRequest) -> HttpResponse:
    """`answer=approve|reject` for every waiting item, or one message's (`message=<id>`)."""
    answer = request.POST.get("answer")
    raw = request.POST.get("message", "")
    if answer not in ("approve", "reject") or (raw and not raw.isdigit()) or len(raw) > 18:
        error = services.InvalidMemory("Answer approve or reject (and a message id, if any).")
        return _refused(request, error, None)
    message_id = int(raw) if raw else None
    results: list[dict[str, Any]] = []
    conflicts: dict[int, str] = {}
    if answer == "approve":
        answered = review.approve_all(user=request.user, source_message_id=message_id)
        conflicts = answered.conflicts
        results = [
            {"pk": a.pending_id, "applied": a.applied, "memory": a.memory}
            for a in answered.approved
        ]
    else:
        review.reject_all(user=request.user, source_message_id=message_id)
    if _origin(request) != "chat":
        return memory_views._list(request, review_conflicts=list(conflicts.values()))
    response = render(
        request,
        f"{TEMPLATE}#chat-review-done",
        {
            "message_id": raw,
            "results": results,
            "conflicts": conflicts,
            "rejected": answer == "reject",
        },
    )
    return trigger_client_event(response, "memories-changed")


@login_required
@require_POST
def settings_view(request: HttpRequest) -> HttpResponse:
    """Turn "Ask me before remembering" on or off (the memory page's and account page's)."""
    user: Any = request.user
    account_services.set_ask_before_remembering(
        user=user, enabled=request.POST.get("enabled") == "true"
    )
    if not request.headers.get("HX-Request"):
        next_url = request.POST.get("next", "")
        if url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
            return redirect(next_url)
        return redirect("memory:index")
    response = render(
        request,
        f"{TEMPLATE}#review-switch",
        {"user": user, "next": request.POST.get("next"), "compact": request.POST.get("compact")},
    )
    return trigger_client_event(response, "memories-changed")
