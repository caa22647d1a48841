"""Paused means paused: what is said while memory is off, or in an incognito chat, is never
learned, summarized or recalled, even by sweeps that run hours later with memory back on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts import services as account_services
from chat import services
from chat.models import Conversation, Message
from memory.models import ConversationSummary, Entity, Memory, MemoryEvent
from tests.accounts.test_erasure import _rows_containing
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db


def _echo(request: dict[str, Any]) -> str | dict[str, Any]:
    """A model that learns and summarizes whatever it is shown."""
    schema = (request.get("response_format") or {}).get("schema") or {}
    text = request["messages"][-1]["content"]
    if "facts" in schema.get("properties", {}):
        kind = "profile" if text.startswith("I live") else "fact"  # profile: always recalled
        return {
            "facts": [{"kind": kind, "content": text}],
            "entities": [{"name": "Ravi", "type": "person", "attributes": {}}]
            if "Ravi" in text
            else [],
        }
    if "decisions" in schema.get("properties", {}):
        return {"decisions": []}
    if text.startswith("Summarize"):
        return " ".join(line[4:] for line in text.splitlines() if line.startswith("Me: "))
    return "Noted."


def _turn(user: Any, conversation: Conversation, text: str) -> Message:
    message, reply = services.send_message(user=user, conversation_id=conversation.pk, content=text)

    async def run() -> None:
        async for _ in services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(run)()
    return message


class Clock:
    """`django.utils.timezone.now` that the test moves forward."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta()
        real_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: real_now() + self.offset)

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def _run_sweeps(settings: Any) -> None:
    """What beat's sweeps do, with their tasks run in place."""
    for message_id in services.unlearned_message_ids(
        older_than=timedelta(minutes=2), within=timedelta(days=2)
    ):
        services.learn_from_message(message_id=message_id)
    for conversation_id in services.conversations_to_summarize(
        idle=timedelta(minutes=settings.SUMMARY_IDLE_MINUTES),
        every=settings.SUMMARY_EVERY_MESSAGES,
    ):
        services.summarize_conversation(conversation_id=conversation_id)


def test_what_was_said_while_paused_is_never_learned_summarized_or_recalled_later(
    user: Any, fake_llm: FakeLLM, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _echo
    clock = Clock(monkeypatch)
    conversation = services.start_conversation(user=user)
    said_on = _turn(user, conversation, "I live in Lisbon with my partner.")
    account_services.set_memory_enabled(user=user, enabled=False)
    said_paused = _turn(user, conversation, "I love playing chess with my brother Ravi.")
    paused_alone = services.start_conversation(user=user)
    _turn(user, paused_alone, "My sister Ines is moving to Canada.")
    account_services.set_memory_enabled(user=user, enabled=True)
    incognito = services.start_conversation(user=user, incognito=True)
    _turn(user, incognito, "I secretly love karaoke on Tuesdays.")
    assert (said_on.learnable, said_paused.learnable) == (True, False)

    # Hours later, memory on: the sweeps find the turns whose extraction never ran, and the
    # idle conversations.
    clock.advance(timedelta(hours=3))
    _run_sweeps(settings)
    # A task for the paused message delivered late changes nothing either.
    assert services.learn_from_message(message_id=said_paused.pk) is None

    learned = " ".join(Memory.objects.filter(user=user).values_list("content", flat=True))
    assert "Lisbon" in learned
    summary = ConversationSummary.objects.get(conversation_id=conversation.pk)
    assert "Lisbon" in summary.content
    assert not ConversationSummary.objects.filter(
        conversation_id__in=[paused_alone.pk, incognito.pk]
    ).exists()
    assert not Entity.objects.filter(user=user).exists()
    for words in ("chess", "Ravi", "Ines", "karaoke"):
        # Only the transcript itself (and its title) holds them: nothing Mnemo learned.
        assert set(_rows_containing(words)) <= {"chat_message", "chat_conversation"}, words
    assert not MemoryEvent.objects.filter(new_content__icontains="chess").exists()

    # A week of sweeps later, still nothing; and the next reply recalls none of it.
    clock.advance(timedelta(days=1))
    _run_sweeps(settings)
    later = services.start_conversation(user=user)
    _turn(user, later, "Who do I play chess with, and what about Ines and karaoke?")
    system = fake_llm.chat_requests[-1]["messages"][0]["content"]
    assert "Lisbon" in system
    for words in ("chess", "Ravi", "Ines", "karaoke"):
        assert words not in system


def test_a_sweep_does_not_learn_a_message_said_while_paused_after_memory_is_back_on(
    user: Any, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_clock = Clock(monkeypatch)
    fake_llm.responder = _echo
    conversation = services.start_conversation(user=user)
    account_services.set_memory_enabled(user=user, enabled=False)
    paused, _ = services.send_message(
        user=user, conversation_id=conversation.pk, content="I am training for a triathlon."
    )
    account_services.set_memory_enabled(user=user, enabled=True)
    settings_clock.advance(timedelta(minutes=30))

    ids = services.unlearned_message_ids(older_than=timedelta(minutes=2), within=timedelta(days=2))

    assert paused.pk not in ids
    assert not Memory.objects.filter(user=user).exists()
