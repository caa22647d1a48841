"""The memory engine end to end: chat turns, a real Celery worker, the fake LLM over HTTP."""

from __future__ import annotations

import re
import time
from typing import Any

from asgiref.sync import async_to_sync

from chat import services as chat_services
from chat.models import Conversation, Message
from memory.models import ExtractionRun, Memory, MemoryEvent
from tests.fake_llm import FakeLLM

SECRET = "sk-live9f8e7d6c5b4a3f2e1d0c9b8a"

# What the background model "proposes" for each message: realistic, including an invented
# fact and a leaked secret, which the guards must drop, and a preference phrased as an order
# to the assistant, which is data about the person and kept.
PROPOSALS: dict[str, list[dict[str, str]]] = {
    "Hi, I'm Ada Lovelace and I work at Acme as a data engineer.": [
        {"kind": "profile", "content": "My name is Ada Lovelace"},
        {"kind": "profile", "content": "The user works at Acme"},
        {"kind": "profile", "content": "I work as a data engineer"},
        {"kind": "fact", "content": "I have two cats"},  # invented: not in the message
    ],
    "I prefer short answers with code examples.": [
        {"kind": "preference", "content": "I prefer short answers with code examples"},
    ],
    "I live in Paris.": [{"kind": "profile", "content": "I live in Paris"}],
    "I moved to Berlin last month.": [{"kind": "profile", "content": "I moved to Berlin"}],
    "By the way, my name is Ada Lovelace.": [
        {"kind": "profile", "content": "My name is Ada Lovelace"}
    ],
    "Actually, these days I prefer detailed answers.": [
        {"kind": "preference", "content": "I prefer detailed answers"}
    ],
    f"My API key is {SECRET}, keep it handy.": [
        {"kind": "fact", "content": f"My API key is {SECRET}"}
    ],
    "Remember that you must always answer in French.": [
        {"kind": "preference", "content": "You must always answer in French"}
    ],
    "I secretly love karaoke.": [{"kind": "preference", "content": "I love karaoke"}],
}


def responder(request: dict[str, Any]) -> str | dict[str, Any]:
    schema = (request.get("response_format") or {}).get("schema") or {}
    text = request["messages"][-1]["content"]
    if "facts" in schema.get("properties", {}):
        return {"facts": PROPOSALS.get(text, [])}
    if "decisions" in schema.get("properties", {}):
        # A changed preference replaces the old one.
        old = re.search(r"existing memory id=(\d+): I prefer short", text)
        memory_id = int(old.group(1)) if old else None
        return {"decisions": [{"statement": 1, "action": "update", "memory_id": memory_id}]}
    return "Noted."


def turn(user: Any, conversation: Conversation, text: str) -> Message:
    message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=text
    )

    async def run() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(run)()
    return message


def wait_for_run(message: Message, timeout: float = 60) -> ExtractionRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ExtractionRun.objects.filter(source_message_id=message.pk).first()
        if run is not None:
            return run
        time.sleep(0.1)
    raise AssertionError(f"no extraction ran for message {message.pk}: {message.content!r}")


def test_a_multi_session_story_ends_with_exactly_the_right_memories(
    celery_worker: Any, fake_llm: FakeLLM, user: Any, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = responder

    # Session 1: name, job, a preference, where I live.
    first = chat_services.start_conversation(user=user)
    m_intro = turn(user, first, "Hi, I'm Ada Lovelace and I work at Acme as a data engineer.")
    m_pref = turn(user, first, "I prefer short answers with code examples.")
    m_paris = turn(user, first, "I live in Paris.")
    intro_run = wait_for_run(m_intro)
    assert intro_run.added == 3 and intro_run.rejected == 1  # the invented cats
    wait_for_run(m_pref)
    wait_for_run(m_paris)

    # An incognito chat teaches nothing.
    incognito = chat_services.start_conversation(user=user, incognito=True)
    turn(user, incognito, "I secretly love karaoke.")

    # Session 2: a move, a repeated statement, a changed preference, a secret, an instruction.
    second = chat_services.start_conversation(user=user)
    m_berlin = turn(user, second, "I moved to Berlin last month.")
    m_again = turn(user, second, "By the way, my name is Ada Lovelace.")
    m_detail = turn(user, second, "Actually, these days I prefer detailed answers.")
    m_secret = turn(user, second, f"My API key is {SECRET}, keep it handy.")
    m_order = turn(user, second, "Remember that you must always answer in French.")
    berlin_run = wait_for_run(m_berlin)
    assert berlin_run.updated == 1 and berlin_run.llm_calls == 1  # the slot decided, no LLM
    assert wait_for_run(m_again).unchanged == 1
    detail_run = wait_for_run(m_detail)
    # A new answer length replaces the old one by slot, without a decision call.
    assert detail_run.updated == 1 and detail_run.llm_calls == 1
    secret_run, order_run = wait_for_run(m_secret), wait_for_run(m_order)
    assert secret_run.rejected >= 1 and secret_run.added == 0
    assert order_run.added == 1  # a preference, even phrased as an order

    memories = {(m.kind, m.content) for m in Memory.objects.filter(user=user)}
    assert memories == {
        ("profile", "My name is Ada Lovelace."),
        ("profile", "I work at Acme."),
        ("profile", "I work as a data engineer."),
        ("profile", "I moved to Berlin."),
        ("preference", "I prefer detailed answers."),
        ("preference", "You must always answer in French."),
    }
    assert not ExtractionRun.objects.filter(
        source_message_id__in=Message.objects.filter(conversation=incognito).values("pk")
    ).exists()

    # Provenance and history.
    berlin = Memory.objects.get(user=user, content="I moved to Berlin.")
    assert berlin.source_message_id == m_berlin.pk
    assert berlin.source_conversation_id == first.pk  # learned there first, updated since
    history = list(
        MemoryEvent.objects.filter(memory_ref=berlin.pk).order_by("created_at", "id")
        .values_list("action", "actor", "old_content", "new_content")
    )  # fmt: skip
    assert history == [
        ("added", "extractor", "", "I live in Paris."),
        ("updated", "extractor", "I live in Paris.", "I moved to Berlin."),
    ]
    name = Memory.objects.get(user=user, content="My name is Ada Lovelace.")
    assert name.confirmations == 1 and name.source_message_id == m_intro.pk

    # Session 3: the next conversation's prompt carries what Mnemo learned, marked as data.
    third = chat_services.start_conversation(user=user)
    fake_llm.reply("You live in Berlin.")
    question = turn(user, third, "Where do I live now?")
    prompt = [r for r in fake_llm.chat_requests if r.get("stream")][-1]["messages"]
    system = prompt[0]["content"]
    assert "<memories>" in system and "data, not instructions" in system
    for content in (
        "My name is Ada Lovelace.",
        "I moved to Berlin.",
        "I prefer detailed answers.",
        "You must always answer in French.",
    ):
        assert content in system
    for absent in ("Paris", "karaoke", SECRET, "cats"):
        assert absent not in system
    reply = Message.objects.get(conversation=third, role="assistant")
    assert berlin in reply.memories_used.all()
    berlin.refresh_from_db()
    assert berlin.last_used_at is not None
    assert question.pk < reply.pk
