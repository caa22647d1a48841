"""Chat pages (htmx) and the streamed reply (SSE from an async view)."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget
from django_htmx.middleware import HtmxDetails

from chat import selectors, services
from chat.models import Conversation, Message
from config import endpoints
from memory import exposure, review


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _error(
    request: HttpRequest, exc: services.ChatError, target: str = "#composer-error"
) -> HttpResponse:
    # The message goes inside the form's error slot, whatever swap the form asked for
    # (static/js/mnemo.js swaps these retargeted refusals; the form keeps its text).
    response = HttpResponse(escape(exc.message), status=exc.status)
    return reswap(retarget(response, target), "innerHTML")


def _conversation_or_404(request: HttpRequest, conversation_id: int) -> Conversation:
    try:
        return selectors.conversation_for(user=request.user, conversation_id=conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "chat/conversation.html",
        {"conversations": selectors.conversation_list(user=request.user), "conversation": None},
    )


@login_required
@require_POST
def new_conversation(request: HtmxHttpRequest) -> HttpResponse:
    try:
        conversation = services.start_conversation(
            user=request.user,
            incognito=request.POST.get("incognito") in ("on", "true", "1"),
            endpoint=request.POST.get("endpoint", ""),
        )
    except services.ChatError as exc:
        return HttpResponse(escape(exc.message), status=exc.status, content_type="text/plain")
    url = reverse("chat:conversation", args=[conversation.pk])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@login_required
@require_GET
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    current = _conversation_or_404(request, conversation_id)
    chat_messages = list(selectors.message_list(user=request.user, conversation_id=current.pk))
    _attach_reviews(request.user, current, chat_messages)
    return render(
        request,
        "chat/conversation.html",
        {
            "conversations": selectors.conversation_list(user=request.user),
            "conversation": current,
            "chat_messages": chat_messages,
            **_endpoint_context(current),
        },
    )


def _attach_reviews(user: Any, conversation: Conversation, messages: list[Message]) -> None:
    """ "Remember this?" on load: what waits for review from each message of the conversation
    goes under the reply to it (under the message itself when it has no reply), as the notice
    a streamed reply shows. Sets `review_message_id` and `review_items` on that message."""
    if conversation.incognito:
        return
    waiting: dict[int, list[review.ReviewItem]] = {}
    for item in review.pending_list(user=user, conversation_id=conversation.pk):
        message_id = item.pending.source_message_id
        if message_id is not None:
            waiting.setdefault(message_id, []).append(item)
    for index, message in enumerate(messages):
        items = waiting.get(message.pk)
        if not items or message.role != Message.Role.USER:
            continue
        following = messages[index + 1] if index + 1 < len(messages) else None
        under = following if following and following.role == Message.Role.ASSISTANT else message
        under.review_message_id = message.pk  # type: ignore[attr-defined]
        under.review_items = items  # type: ignore[attr-defined]


def _endpoint_context(conversation: Conversation) -> dict[str, Any]:
    """The endpoint picker's choices (shown only when there is more than one)."""
    return {
        "endpoints": endpoints.all_endpoints(),
        "current_endpoint": exposure.for_conversation(conversation),
    }


@login_required
@require_POST
def set_endpoint(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Choose the model endpoint that answers this conversation from now on."""
    try:
        current = services.set_conversation_endpoint(
            user=request.user,
            conversation_id=conversation_id,
            endpoint=request.POST.get("endpoint", ""),
        )
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None
    except services.ChatError as exc:
        return _error(request, exc, "#endpoint-error")
    return render(
        request,
        "chat/conversation.html#endpoint-picker",
        {"conversation": current, **_endpoint_context(current)},
    )


@login_required
@require_GET
def conversation_list(request: HttpRequest) -> HttpResponse:
    current = request.GET.get("current", "")
    conversations = selectors.conversation_list(user=request.user)
    return render(
        request,
        "chat/conversation.html#conversation-list",
        {
            "conversations": conversations,
            # The open conversation, whose title the fragment also refreshes (out of band).
            "conversation": conversations.filter(pk=current).first() if current.isdigit() else None,
        },
    )


@login_required
@require_POST
def send(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        user_message, reply = services.send_message(
            user=request.user,
            conversation_id=conversation_id,
            content=request.POST.get("content", ""),
        )
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None
    except services.ChatError as exc:
        return _error(request, exc)
    response = render(request, "chat/conversation.html#turn", {"turn": [user_message, reply]})
    response["HX-Trigger"] = "conversations-changed"
    return response


@login_required
@require_POST
def retry(request: HttpRequest, message_id: int) -> HttpResponse:
    try:
        reply = services.retry_reply(user=request.user, message_id=message_id)
    except Message.DoesNotExist:
        raise Http404("No such message.") from None
    except services.ChatError as exc:
        return _error(request, exc)
    return render(request, "chat/conversation.html#message", {"message": reply})


@login_required
@require_POST
def continue_reply(request: HttpRequest, message_id: int) -> HttpResponse:
    """Go on with a reply the token limit cut short: the reply, pending again, streams on."""
    try:
        reply = services.continue_reply(user=request.user, message_id=message_id)
    except Message.DoesNotExist:
        raise Http404("No such message.") from None
    except services.ChatError as exc:
        return _error(request, exc)
    return render(request, "chat/conversation.html#message", {"message": reply})


@login_required
@require_GET
def message(request: HttpRequest, message_id: int) -> HttpResponse:
    """One reply as it stands now. A page that shows a reply being written by another
    connection (the tab was reloaded mid-stream, or the chat is open twice) polls this until
    the reply is complete, stopped or failed, instead of showing "typing" forever."""
    try:
        reply = selectors.reply_for(user=request.user, message_id=message_id)
    except Message.DoesNotExist:
        raise Http404("No such message.") from None
    return render(request, "chat/conversation.html#message", {"message": reply})


@login_required
@require_POST
def stop(request: HttpRequest, message_id: int) -> HttpResponse:
    try:
        services.request_stop(user=request.user, message_id=message_id)
    except Message.DoesNotExist:
        raise Http404("No such message.") from None
    return HttpResponse(status=204)


@login_required
@require_POST
def rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        current = services.rename_conversation(
            user=request.user, conversation_id=conversation_id, title=request.POST.get("title", "")
        )
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None
    except services.ChatError as exc:
        return _error(request, exc, "#rename-error")
    response = render(request, "chat/conversation.html#title", {"conversation": current})
    response["HX-Trigger"] = "conversations-changed"
    return response


@login_required
@require_POST
def delete(request: HtmxHttpRequest, conversation_id: int) -> HttpResponse:
    try:
        services.delete_conversation(user=request.user, conversation_id=conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation.") from None
    if request.htmx:
        return HttpResponseClientRedirect(reverse("chat:index"))
    return redirect("chat:index")


# --- Streaming ---


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def reply_stream_events(
    *, user: Any, message_id: int, render_html: bool
) -> AsyncIterator[str]:
    """SSE lines for a reply: `token` events, then `done` with the final message."""
    # Sent at once so proxies and the browser see the stream open before the first token.
    yield ": stream open\n\n"
    # The final message is rendered in the worker-thread trip that saves it (one trip less).
    on_done = functools.partial(_render_final, user) if render_html else None
    async for event in services.stream_reply(user=user, message_id=message_id, on_done=on_done):
        if event.kind == "token":
            yield sse("token", {"text": event.text})
        elif event.message is not None:
            message = event.message
            data: dict[str, Any] = {
                "id": message.pk,
                "status": message.status,
                "content": message.content,
                "error": message.error,
                "finish_reason": message.finish_reason,
                "cut_short": message.cut_short,
            }
            if render_html:
                data["html"] = event.extra
            yield sse("done", data)


def _render_final(user: Any, message: Message, asked_id: int | None) -> str:
    context: dict[str, Any] = {"message": message}
    conversation = message.conversation
    if user.memory_enabled and not conversation.incognito:
        # Poll for what this turn taught Mnemo, to show "Remembered: …" with an undo.
        if asked_id is None:
            asked = selectors.message_replied_to(user=user, reply=message)
            asked_id = asked.pk if asked else None
        context["learn_from"] = asked_id
    return render_to_string("chat/conversation.html#message", context)


def streaming_response(events: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


# The status of the user's message and the newest non-empty message before it in its
# conversation (the one a pending reply answers, if the person's), in one query scoped to the
# user on both sides. Plain SQL: built by the ORM, the subquery cost about 1.5 ms of CPU.
_STREAM_CHECK_SQL = """
SELECT m.status, asked.role, asked.content
FROM {table} m
LEFT JOIN LATERAL (
    SELECT e.role, e.content FROM {table} e
    WHERE e.user_id = m.user_id AND e.conversation_id = m.conversation_id
      AND e.created_at < m.created_at AND NOT (e.role = %s AND e.content = '')
    ORDER BY e.created_at DESC, e.id DESC
    LIMIT 1
) asked ON true
WHERE m.id = %s AND m.user_id = %s
"""


def _stream_check(request: HttpRequest, message_id: int) -> tuple[Any, str | None]:
    """The signed-in user (or None) and the status of their message (or None if not theirs).

    With it, the text of the message the pending reply answers: its embedding starts here
    (`services.embed_early`) and runs while the stream starts, claims the reply and reads
    the conversation.
    """
    user = request.user = get_user(request)  # the user itself, not a lazy wrapper
    if not user.is_authenticated:
        return None, None
    with connection.cursor() as cursor:
        cursor.execute(
            _STREAM_CHECK_SQL.format(table=connection.ops.quote_name(Message._meta.db_table)),
            [Message.Role.ASSISTANT, message_id, user.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return user, None
    status, asked_role, asked_text = row
    if status == Message.Status.PENDING and asked_role == Message.Role.USER and asked_text:
        services.embed_early(user_id=user.pk, text=asked_text)
    return user, status


async def stream(request: HttpRequest, message_id: int) -> HttpResponseBase:
    """POST: generate a pending reply and stream it as server-sent events."""
    if request.method != "POST":
        return JsonResponse({"detail": "Use POST."}, status=405)
    # Session, user and the message's status in one trip to the request's worker thread
    # (instead of one per await): under hundreds of streams each trip queues behind others.
    user, status = await sync_to_async(_stream_check)(request, message_id)
    if user is None:
        return JsonResponse({"detail": "Sign in first."}, status=403)
    # Checked before the stream starts: once it has, the status code can no longer change.
    if status is None:
        return JsonResponse({"detail": "No such message."}, status=404)
    if status != Message.Status.PENDING:
        return JsonResponse({"detail": "This reply is not waiting to be generated."}, status=409)
    return streaming_response(
        reply_stream_events(user=user, message_id=message_id, render_html=True)
    )


@login_required
@require_GET
def export(request: HttpRequest) -> HttpResponse:
    """Download everything Mnemo holds about the person as one JSON file."""
    from chat.export import export_everything

    data = export_everything(user=request.user)
    response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="mnemo-export-{stamp}.json"'
    return response


@staff_member_required
def insights(request: HttpRequest) -> HttpResponse:
    """Staff console: recall p50/p95 per day, memories per reply, extraction outcomes."""
    from chat.insights import daily_figures

    context = {**admin.site.each_context(request), "title": "Memory insights", **daily_figures()}
    return render(request, "admin/insights.html", context)
