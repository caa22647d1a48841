"""The "What I know about you" page: every memory, where it came from, and control over it.

One URL serves the full page and each fragment (django-template-partials); every action is
an htmx request that swaps the fragment it changed.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget, trigger_client_event
from django_htmx.middleware import HtmxDetails

from accounts import services as account_services
from config.errors import DomainError
from memory import entities as entity_services
from memory import exposure, selectors, services
from memory.models import ConversationSummary, Entity, Memory

TEMPLATE = "memory/index.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _page_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    query = request.GET.get("q", "").strip()
    context = {
        "groups": selectors.memory_groups(user=request.user),
        "summaries": selectors.summary_list(user=request.user),
        "entities": selectors.entity_list(user=request.user),
        "query": query,
        "results": selectors.memory_search(user=request.user, query=query) if query else None,
        "kinds": Memory.Kind.choices,
    }
    from memory.review_views import review_context  # it renders this module's list

    context.update(review_context(user=request.user))
    context.update(extra)
    return context


def _list(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    return render(
        request, f"{TEMPLATE}#memory-list", _page_context(request, **extra), status=status
    )


def _error(request: HttpRequest, exc: DomainError, target: str) -> HttpResponse:
    response = render(request, f"{TEMPLATE}#form-error", {"error": exc.message}, status=exc.status)
    # The forms swap their results outerHTML; the message goes *inside* the error slot, which
    # must survive for the next attempt.
    return reswap(retarget(response, target), "innerHTML")


@login_required
@require_GET
def index(request: HtmxHttpRequest) -> HttpResponse:
    if request.htmx and request.htmx.target == "memory-list":
        return render(request, f"{TEMPLATE}#memory-list", _page_context(request))
    return render(request, TEMPLATE, _page_context(request))


@login_required
@require_POST
def add(request: HttpRequest) -> HttpResponse:
    try:
        services.remember(
            user=request.user,
            content=request.POST.get("content", ""),
            kind=request.POST.get("kind", Memory.Kind.FACT),
            importance=0.7,
        )
    except services.MemoryRequestError as exc:
        return _error(request, exc, "#add-error")
    return _list(request)


@login_required
def edit(request: HttpRequest, memory_id: int) -> HttpResponse:
    """GET: the inline edit form; POST: save the corrected text (re-embedded, history kept)."""
    if request.method == "POST":
        try:
            memory = services.update_memory(
                user=request.user,
                memory_id=memory_id,
                content=request.POST.get("content", ""),
                kind=request.POST.get("kind") or None,
            )
        except services.MemoryRequestError as exc:
            return _error(request, exc, f"#memory-{memory_id} .form-error")
        return render(request, f"{TEMPLATE}#memory-item", {"memory": memory})
    try:
        memory = selectors.memory_for(user=request.user, memory_id=memory_id)
    except Memory.DoesNotExist:
        raise Http404("No such memory.") from None
    mode = "edit" if request.GET.get("mode") != "view" else "view"
    return render(
        request,
        f"{TEMPLATE}#memory-item",
        {"memory": memory, "mode": mode, "kinds": Memory.Kind.choices},
    )


@login_required
@require_POST
def delete(request: HttpRequest, memory_id: int) -> HttpResponse:
    # Already gone (another tab, retention): the list below no longer shows it either way.
    with contextlib.suppress(services.MemoryGone):
        services.forget(user=request.user, memory_id=memory_id)
    if request.POST.get("from") == "chat":
        response = HttpResponse('<span class="muted small">Forgotten.</span>')
        return trigger_client_event(response, "memories-changed")
    return _list(request)


@login_required
@require_POST
def pin(request: HttpRequest, memory_id: int) -> HttpResponse:
    try:
        memory = services.set_pinned(
            user=request.user, memory_id=memory_id, pinned=request.POST.get("pinned") == "true"
        )
    except services.MemoryGone as exc:
        return _error(request, exc, f"#memory-{memory_id} .form-error")
    return render(request, f"{TEMPLATE}#memory-item", {"memory": memory})


@login_required
@require_GET
def history(request: HttpRequest, memory_id: int) -> HttpResponse:
    events = selectors.memory_history(user=request.user, memory_id=memory_id)
    if (
        not events.exists()
        and not Memory.objects.for_user(request.user).filter(pk=memory_id).exists()
    ):
        raise Http404("No such memory.")
    return render(request, f"{TEMPLATE}#history", {"events": events, "memory_id": memory_id})


@login_required
@require_POST
def forget_all(request: HttpRequest) -> HttpResponse:
    if request.POST.get("confirm") != "forget everything":
        error = services.InvalidMemory('Type "forget everything" to confirm.')
        return _error(request, error, "#forget-all-error")
    services.forget_all(user=request.user)
    return _list(request)


@login_required
@require_POST
def settings_view(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    account_services.set_memory_enabled(user=user, enabled=request.POST.get("enabled") == "true")
    if not request.headers.get("HX-Request"):
        return redirect("memory:index")
    return render(request, f"{TEMPLATE}#memory-switch", {"user": user})


@login_required
@require_POST
def delete_summary(request: HttpRequest, summary_id: int) -> HttpResponse:
    try:
        services.delete_summary(user=request.user, summary_id=summary_id)
    except ConversationSummary.DoesNotExist:
        raise Http404("No such summary.") from None
    return _list(request)


# The chat asks what a message taught Mnemo every 2 s for the first polls, then every 5 s:
# on the local model under load, extraction can take a minute or more, and the notice (with
# its Undo, or "Remember this?") used to stop being asked for after about 30 s.
LEARNED_FAST_POLLS = 15
LEARNED_POLLS = 40  # 15 polls of 2 s, then 25 of 5 s: about two and a half minutes


@login_required
@require_GET
def learned(request: HttpRequest) -> HttpResponse:
    """What one message taught Mnemo: the chat's "Remembered: …" notice (polled until done)."""
    raw = request.GET.get("message", "")
    if not raw.isdigit():
        return HttpResponse(status=400, content="Give ?message=<id>.")
    attempt_raw = request.GET.get("attempt", "") or "0"
    if not attempt_raw.isdigit() or len(attempt_raw) > 4:
        return HttpResponse(status=400, content="attempt must be a small whole number.")
    attempt = int(attempt_raw)
    run, memories = selectors.learned_from(user=request.user, source_message_id=int(raw))
    from memory import review

    pending = review.pending_list(user=request.user, source_message_id=int(raw)) if run else []
    return render(
        request,
        f"{TEMPLATE}#learned",
        {
            "run": run,
            "memories": memories,
            "message_id": raw,
            "attempt": attempt + 1,
            "retry": run is None and attempt < LEARNED_POLLS,
            "delay": "2s" if attempt < LEARNED_FAST_POLLS else "5s",
            "pending": pending,
            "kinds": Memory.Kind.choices,
        },
    )


def parse_attributes(text: str) -> dict[str, str]:
    """ "works at: Google" lines, as typed in the entity form, into attributes."""
    attributes = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            attributes[key.strip()] = value.strip()
    return attributes


@login_required
def edit_entity(request: HttpRequest, entity_id: int) -> HttpResponse:
    """GET: the entity's edit form; POST: save its name and attributes (history kept)."""
    try:
        if request.method == "POST":
            try:
                entity = entity_services.update_entity(
                    user=request.user,
                    entity_id=entity_id,
                    name=request.POST.get("name") or None,
                    attributes=parse_attributes(request.POST.get("attributes", "")),
                )
            except entity_services.InvalidEntity as exc:
                return _error(request, exc, f"#entity-{entity_id} .form-error")
            return render(request, f"{TEMPLATE}#entity-item", {"entity": entity})
        entity = selectors.entity_for(user=request.user, entity_id=entity_id)
    except Entity.DoesNotExist:
        raise Http404("No such entity.") from None
    except entity_services.EntityNameTaken as exc:
        # Nothing typed is lost: the form stays as it is, the message goes in its error slot.
        return _error(request, exc, f"#entity-{entity_id} .form-error")
    mode = "view" if request.GET.get("mode") == "view" else "edit"
    return render(request, f"{TEMPLATE}#entity-item", {"entity": entity, "mode": mode})


@login_required
@require_POST
def delete_entity(request: HttpRequest, entity_id: int) -> HttpResponse:
    with contextlib.suppress(Entity.DoesNotExist):
        entity_services.delete_entity(user=request.user, entity_id=entity_id)
    return _list(request)


@login_required
@require_POST
def local_only(request: HttpRequest, memory_id: int) -> HttpResponse:
    """Keep one memory on local models ("true"), let it go to any ("false"), or "default"."""
    choice = request.POST.get("local_only", "")
    if choice not in ("true", "false", "default"):
        error = services.InvalidMemory('Send local_only "true", "false" or "default".')
        return _error(request, error, f"#memory-{memory_id} .form-error")
    value = None if choice == "default" else choice == "true"
    try:
        memory = exposure.set_memory_local_only(
            user=request.user, memory_id=memory_id, local_only=value
        )
    except services.MemoryGone as exc:
        return _error(request, exc, f"#memory-{memory_id} .form-error")
    return render(request, f"{TEMPLATE}#memory-item", {"memory": memory})


@login_required
@require_POST
def local_only_rules(request: HttpRequest) -> HttpResponse:
    """Which kinds (and categories) stay on local models: the checked boxes, all others off."""
    checked = set(request.POST.getlist("local_only"))
    rules = exposure.set_rules(
        user=request.user, local_only={key: key in checked for key in exposure.KEY_NAMES}
    )
    request._local_only_rules = rules  # type: ignore[attr-defined]  # read by the template tags
    if not request.headers.get("HX-Request"):
        back = "accounts:account" if request.POST.get("next") == "account" else "memory:index"
        return redirect(back)
    response = render(request, "memory/_local_only_rules.html", {"saved": True})
    # The memory list shows each memory's state: it refreshes itself on this event.
    return trigger_client_event(response, "memories-changed")
