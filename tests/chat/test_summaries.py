"""Rolling conversation summaries, when they are due, and recall of them later."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from chat import services
from chat.models import Conversation, Message
from memory.models import ConversationSummary
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db


def exchange(user: Any, conversation: Conversation, text: str, answer: str) -> None:
    Message.objects.create(user=user, conversation=conversation, role="user", content=text)
    Message.objects.create(user=user, conversation=conversation, role="assistant", content=answer)


def test_a_summary_is_written_and_then_rolled_forward(user: Any, fake_llm: FakeLLM) -> None:
    conversation = services.start_conversation(user=user, title="Trip planning")
    exchange(user, conversation, "I want to visit Lisbon in May.", "Lovely, May is mild there.")
    fake_llm.reply("I planned a trip to Lisbon in May.")
    assert services.summarize_conversation(conversation_id=conversation.pk) is True
    summary = ConversationSummary.objects.get(conversation_id=conversation.pk)
    assert summary.content == "I planned a trip to Lisbon in May."
    assert summary.user == user and summary.message_count == 2
    assert len(summary.embedding) == 384
    first_prompt = fake_llm.chat_requests[-1]["messages"][-1]["content"]
    assert "Lisbon in May" in first_prompt and "Summary so far" not in first_prompt

    # Nothing new: nothing to do, no LLM call.
    calls = len(fake_llm.chat_requests)
    assert services.summarize_conversation(conversation_id=conversation.pk) is False
    assert len(fake_llm.chat_requests) == calls

    exchange(user, conversation, "Budget hotels only, please.", "Noted: budget hotels.")
    fake_llm.reply("I planned a budget trip to Lisbon in May.")
    assert services.summarize_conversation(conversation_id=conversation.pk) is True
    rolled = fake_llm.chat_requests[-1]["messages"][-1]["content"]
    assert "Summary so far: I planned a trip to Lisbon in May." in rolled
    assert "Budget hotels" in rolled and "visit Lisbon" not in rolled  # only the new messages
    summary.refresh_from_db()
    assert summary.content == "I planned a budget trip to Lisbon in May."
    assert summary.message_count == 4
    assert ConversationSummary.objects.count() == 1


def test_incognito_and_paused_conversations_are_never_summarized(
    user: Any, fake_llm: FakeLLM
) -> None:
    incognito = services.start_conversation(user=user, incognito=True)
    exchange(user, incognito, "Secret plans.", "Understood.")
    assert services.summarize_conversation(conversation_id=incognito.pk) is False
    normal = services.start_conversation(user=user)
    exchange(user, normal, "Ordinary plans.", "Sure.")
    user.memory_enabled = False
    user.save()
    assert services.summarize_conversation(conversation_id=normal.pk) is False
    assert not ConversationSummary.objects.exists()
    assert not fake_llm.chat_requests


def test_idle_or_long_conversations_are_due(user: Any, settings: Any) -> None:
    idle = services.start_conversation(user=user)
    exchange(user, idle, "a", "b")
    Conversation.objects.filter(pk=idle.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    active = services.start_conversation(user=user)
    exchange(user, active, "c", "d")
    long = services.start_conversation(user=user)
    for i in range(settings.SUMMARY_EVERY_MESSAGES // 2):
        exchange(user, long, f"q{i}", f"a{i}")
    incognito = services.start_conversation(user=user, incognito=True)
    exchange(user, incognito, "e", "f")
    Conversation.objects.filter(pk=incognito.pk).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    due = services.conversations_to_summarize(
        idle=timedelta(minutes=settings.SUMMARY_IDLE_MINUTES), every=settings.SUMMARY_EVERY_MESSAGES
    )
    assert sorted(due) == sorted([idle.pk, long.pk])


def test_a_later_conversation_recalls_the_summary_of_an_earlier_one(
    user: Any, fake_llm: FakeLLM
) -> None:
    earlier = services.start_conversation(user=user, title="Trip planning")
    exchange(user, earlier, "I want to visit Lisbon in May.", "Lovely.")
    fake_llm.reply("I planned a trip to Lisbon in May on a budget.")
    services.summarize_conversation(conversation_id=earlier.pk)

    later = services.start_conversation(user=user)
    _, reply = services.send_message(
        user=user, conversation_id=later.pk, content="Remind me, when was my Lisbon trip?"
    )
    fake_llm.reply("In May.")

    async def run() -> None:
        async for _ in services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(run)()
    system = fake_llm.chat_requests[-1]["messages"][0]["content"]
    assert "(earlier conversation) I planned a trip to Lisbon in May on a budget." in system
    reply.refresh_from_db()
    assert any(item["source"] == "summary" and item["included"] for item in reply.recall["items"])
