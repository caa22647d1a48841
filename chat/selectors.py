"""Read-only chat queries shared by pages and the API, always scoped to the user in SQL."""

from __future__ import annotations

from typing import Any

from chat.models import Conversation, ConversationQuerySet, Message, MessageQuerySet


def conversation_list(*, user: Any) -> ConversationQuerySet:
    return Conversation.objects.for_user(user).order_by("-updated_at", "-id")


def conversation_for(*, user: Any, conversation_id: int) -> Conversation:
    """Raises Conversation.DoesNotExist for a conversation that is not the user's."""
    return Conversation.objects.for_user(user).get(pk=conversation_id)


def message_list(*, user: Any, conversation_id: int) -> MessageQuerySet:
    return (
        Message.objects.for_user(user)
        .filter(conversation_id=conversation_id)
        .order_by("created_at", "id")
        .prefetch_related("memories_used")
    )


def reply_for(*, user: Any, message_id: int) -> Message:
    """One of the user's replies, with the memories it used; raises Message.DoesNotExist."""
    return (
        Message.objects.for_user(user)
        .prefetch_related("memories_used")
        .get(pk=message_id, role=Message.Role.ASSISTANT)
    )


def message_replied_to(*, user: Any, reply: Message) -> Message | None:
    """The person's message a reply answers (the newest before it in its conversation)."""
    return Message.objects.for_user(user).asked_before(reply).first()
