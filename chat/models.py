"""Conversations and their messages."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

# The finish reason of a reply the token limit ended (OpenAI's name, which llama.cpp, vLLM
# and Ollama use too).
FINISH_LENGTH = "length"


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def for_user(self, user: Any) -> ConversationQuerySet:
        return self.filter(user=user)


class Conversation(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=120, blank=True)
    # Incognito conversations are never learned from and never recalled.
    incognito = models.BooleanField(default=False)
    # The model endpoint that answers (config/endpoints.py, by name); "" is the default one,
    # and so is a name the operator has since removed.
    endpoint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="conversation_user_recent")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    @property
    def display_title(self) -> str:
        return self.title or "New chat"


class MessageQuerySet(models.QuerySet["Message"]):
    def for_user(self, user: Any) -> MessageQuerySet:
        return self.filter(user=user)

    def asked_before(self, reply: Message) -> MessageQuerySet:
        """The person's messages before `reply` in its conversation, newest first: the first
        one is the message the reply answers."""
        return self.filter(
            conversation_id=reply.conversation_id,
            role=Message.Role.USER,
            created_at__lt=reply.created_at,
        ).order_by("-created_at", "-id")


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        # An assistant message is created as PENDING before its reply is requested,
        # STREAMING while tokens arrive; it ends COMPLETE, STOPPED (by the person or a
        # disconnect, keeping what came) or FAILED (keeping the error for a retry).
        PENDING = "pending"
        STREAMING = "streaming"
        STOPPED = "stopped"
        FAILED = "failed"

    # The owner, denormalized from the conversation so that every query scopes by user in SQL.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.CharField(max_length=300, blank=True)
    # Why the model ended the reply, as the endpoint said (OpenAI's finish_reason): "stop"
    # (it finished), "length" (the token limit cut it: shown as "Cut short" with Continue),
    # "" when not known (a memory command, a stopped or failed reply, older replies).
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # Whether memory was on when this was said (not incognito, memory not paused): what was
    # said while it was off is never learned from or summarized, even by a sweep that runs
    # after memory is switched back on.
    learnable = models.BooleanField(default=True)
    # The endpoint this was said to (the conversation's when it was sent): text said to a
    # local endpoint never goes to a hosted one (memory/exposure.py). "" is the default one.
    endpoint = models.CharField(max_length=64, blank=True, default="")
    # The memories recall put into this reply's prompt (shown as "Used N memories").
    # No database-level foreign keys on the link rows: PostgreSQL checks a foreign key once
    # per deleted row, and erasing 100,000 memories spent 9 s on those checks alone
    # (bench/erase.py). Django's delete still removes the links; so does the erasure.
    memories_used = models.ManyToManyField(
        "memory.Memory", blank=True, related_name="+", db_constraint=False
    )
    # What recall retrieved for this reply, with scores, what made it into the prompt, and
    # how long it took: ids and numbers only, never memory text. Deleted with the message.
    recall = models.JSONField(default=dict, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time"),
            models.Index(fields=["user", "created_at"], name="message_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    def recall_rows(self) -> list[dict[str, Any]]:
        """The recall record with each item's current text (gone if since forgotten)."""
        from memory.models import ConversationSummary, Entity, Memory

        items = (self.recall or {}).get("items", [])
        memory_ids = [i["id"] for i in items if i["source"] == "memory"]
        summary_ids = [i["id"] for i in items if i["source"] == "summary"]
        texts = dict(
            Memory.objects.for_user(self.user_id)
            .filter(pk__in=memory_ids)
            .values_list("pk", "content")
        )
        summaries = dict(
            ConversationSummary.objects.filter(
                user_id=self.user_id, pk__in=summary_ids
            ).values_list("pk", "content")
        )
        entity_ids = [i["id"] for i in items if i["source"] == "entity"]
        entities = {
            e.pk: e.describe()
            for e in Entity.objects.filter(user_id=self.user_id, pk__in=entity_ids)
        }
        by_source = {"memory": texts, "summary": summaries, "entity": entities}
        return [
            {**item, "content": by_source.get(item["source"], {}).get(item["id"])} for item in items
        ]

    @property
    def cut_short(self) -> bool:
        """A finished reply the token limit ended, likely mid-sentence: it can be continued."""
        return self.status == self.Status.COMPLETE and self.finish_reason == FINISH_LENGTH

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.STREAMING)
