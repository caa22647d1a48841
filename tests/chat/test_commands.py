"""Memory questions answered from memory itself, and the inspectable recall record."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync

from chat import commands
from chat import services as chat_services
from chat.models import Message
from memory import services as memory_services
from memory.models import Memory
from tests.factories import UserFactory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db


def turn(user: Any, text: str, **conversation: Any) -> Message:
    chat = chat_services.start_conversation(user=user, **conversation)
    _, reply = chat_services.send_message(user=user, conversation_id=chat.pk, content=text)

    async def run() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(run)()
    reply.refresh_from_db()
    return reply


@pytest.fixture
def remembered(user: Any) -> dict[str, Memory]:
    return {
        "name": memory_services.remember(user=user, content="My name is Ada.", kind="profile"),
        "berlin": memory_services.remember(user=user, content="I live in Berlin.", kind="profile"),
        "tea": memory_services.remember(
            user=user, content="I prefer green tea.", kind="preference"
        ),
        "bruno": memory_services.remember(user=user, content="My dog Bruno is 3.", kind="fact"),
    }


@pytest.mark.parametrize(
    "question",
    [
        "What do you know about me?",
        "what do you remember about me",
        "Tell me what you know about me.",
        "What have you learned about me so far?",
        "Show me my memories",
    ],
)
def test_what_do_you_know_lists_exactly_the_stored_memories(
    user: Any, remembered: dict[str, Memory], fake_llm: FakeLLM, question: str
) -> None:
    memory_services.remember(user=UserFactory(), content="I live in Oslo.", kind="profile")
    reply = turn(user, question)
    assert reply.status == Message.Status.COMPLETE
    assert reply.model == commands.MODEL
    listed = [line[2:] for line in reply.content.splitlines() if line.startswith("- ")]
    assert sorted(listed) == sorted(m.content for m in remembered.values())
    assert "/memory/" in reply.content
    assert "Oslo" not in reply.content
    assert not fake_llm.chat_requests  # answered from memory, not improvised by the model


def test_an_ordinary_question_is_not_a_memory_command(user: Any, fake_llm: FakeLLM) -> None:
    fake_llm.reply("Paris is the capital of France.")
    reply = turn(user, "What do you know about Paris?")
    assert reply.model == "fake-chat"
    assert reply.content == "Paris is the capital of France."


def test_forget_that_removes_only_the_matching_memory(
    user: Any, remembered: dict[str, Memory], fake_llm: FakeLLM
) -> None:
    reply = turn(user, "Forget that I live in Berlin.")
    # It says which one it was by kind and date, and keeps no copy of the forgotten words.
    assert "profile memory from" in reply.content
    assert "Berlin" not in reply.content
    remaining = set(Memory.objects.filter(user=user).values_list("content", flat=True))
    assert remaining == {"My name is Ada.", "I prefer green tea.", "My dog Bruno is 3."}
    assert not fake_llm.chat_requests


def test_forget_with_no_matching_memory_changes_nothing(
    user: Any, remembered: dict[str, Memory]
) -> None:
    reply = turn(user, "Forget that I own a submarine.")
    assert "couldn't find" in reply.content
    assert Memory.objects.filter(user=user).count() == 4


def test_forget_never_touches_another_users_memory(user: Any) -> None:
    other = UserFactory()
    theirs = memory_services.remember(user=other, content="I live in Berlin.", kind="profile")
    reply = turn(user, "Forget that I live in Berlin.")
    assert "couldn't find" in reply.content
    assert Memory.objects.filter(pk=theirs.pk).exists()


def test_memory_commands_are_not_learned_from(
    user: Any, remembered: dict[str, Memory], settings: Any
) -> None:
    from unittest import mock

    from chat import tasks

    with mock.patch.object(tasks.extract_memories_task, "delay") as delay:
        turn(user, "Forget that I prefer green tea.")
    delay.assert_not_called()


def test_the_recall_record_matches_what_the_prompt_contained(
    user: Any, remembered: dict[str, Memory], fake_llm: FakeLLM
) -> None:
    fake_llm.reply("Bruno sounds lovely.")
    reply = turn(user, "How old is my dog Bruno?")
    system = fake_llm.chat_requests[-1]["messages"][0]["content"]
    record = reply.recall
    assert record["ms"] > 0 and record["candidates"] >= 4
    included = {item["id"] for item in record["items"] if item["included"]}
    in_prompt = {m.pk for m in Memory.objects.filter(user=user) if m.content in system}
    assert included == in_prompt
    assert remembered["bruno"].pk in included
    assert set(reply.memories_used.values_list("pk", flat=True)) == included
    for item in record["items"]:
        assert set(item) >= {"similarity", "text_rank", "importance", "score", "included"}
        assert "content" not in item  # ids and numbers only: forgetting leaves no text behind
    rows = {row["id"]: row for row in reply.recall_rows()}
    assert rows[remembered["bruno"].pk]["content"] == "My dog Bruno is 3."


def test_incognito_and_paused_memory_recall_nothing(
    user: Any, remembered: dict[str, Memory], fake_llm: FakeLLM
) -> None:
    reply = turn(user, "Where do I live?", incognito=True)
    assert "Berlin" not in fake_llm.chat_requests[-1]["messages"][0]["content"]
    assert reply.recall == {}
    user.memory_enabled = False
    user.save()
    reply = turn(user, "Where do I live?")
    assert "Berlin" not in fake_llm.chat_requests[-1]["messages"][0]["content"]
    assert not reply.memories_used.exists()


def test_staff_see_recall_and_extraction_figures_without_any_text(
    user: Any, remembered: dict[str, Memory], fake_llm: FakeLLM, client: Any
) -> None:
    from memory.models import ExtractionRun

    fake_llm.reply("Sure.")
    turn(user, "How old is my dog Bruno?")
    ExtractionRun.objects.create(user=user, source_message_id=1, status="done", added=2, rejected=1)
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    page = client.get("/admin/insights/").content.decode()
    assert "Recall p50" in page and "Rejected by guards" in page
    assert "<td>2</td>" in page  # added
    for memory in remembered.values():
        assert memory.content not in page
    client.force_login(user)
    assert client.get("/admin/insights/").status_code == 302  # not staff: sent to log in
