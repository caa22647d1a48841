"""An auditor's look at forget, incognito and paused memory: every column of every table.

A conversation with the fake model says a fact twice, in two messages of two conversations;
the real extraction learns it, the real summarizer summarizes both conversations, the model
titles them. The person then forgets the fact (page or API), and the test looks for the
forgotten words the way an auditor would: every text, varchar, json, jsonb and tsvector
column of every table in the database (found by introspection, not a hand list), every
Redis key and value, and the export. Only the person's own chat (the messages: what they
typed and the replies) may still hold them.

The same scan runs over what is said in an incognito chat and while memory is paused: no
derived table ever holds it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_redis import get_redis_connection

from accounts import services as account_services
from chat import services as chat_services
from chat.export import export_everything
from chat.models import Conversation, Message
from memory import retention
from memory import services as memory_services
from memory.models import ConversationSummary, Entity, Memory, MemoryEvent, RetentionPolicy
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

# One word (full-text search keeps it as one lexeme, "quokkabrin…"), found as a prefix.
CANARY = "quokkabrine"
NEEDLE = "quokkab"
FACT = f"I'm allergic to {CANARY}."
FIRST = f"I live in Berlin. {FACT}"
# Said again later, in a sentence that also says something else.
SECOND = f"I keep bees and I'm allergic to {CANARY}. My hive is on the roof."

# The person's own chat: what they typed (and the model's replies). Nothing else may keep
# the words, not even the title the model gave the conversation.
CHAT_HISTORY = {("chat_message", "content")}
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "tsvector")


def _model(request: dict[str, Any]) -> str | dict[str, Any]:
    """A model that learns every clause it is shown, summarizes and titles by echoing."""
    schema = (request.get("response_format") or {}).get("schema") or {}
    text = request["messages"][-1]["content"]
    if "facts" in schema.get("properties", {}):
        clauses = []
        for sentence in text.split(". "):
            clauses += [c.strip(" .") for c in sentence.split(" and ") if c.strip(" .")]
        entities: list[dict[str, Any]] = []
        if "Berlin" in text:
            entities.append({"name": "Berlin", "type": "place", "attributes": {}})
        if "Bruno" in text:  # a pet's attribute holding the fact's words, as a model writes it
            allergy = {"allergy": CANARY} if CANARY in text else {}
            entities.append({"name": "Bruno", "type": "pet", "attributes": allergy})
        return {
            "facts": [{"kind": "fact", "content": clause} for clause in clauses],
            "entities": entities,
        }
    if "decisions" in schema.get("properties", {}):
        return {"decisions": []}
    if text.startswith("Summarize"):
        return " ".join(line[4:] for line in text.splitlines() if line.startswith("Me: "))
    if text.startswith("Give a short title"):
        return text.split("Message: ", 1)[1].split("\n", 1)[0][:60]
    return "Noted."


def _turn(user: Any, conversation: Conversation, text: str) -> Message:
    """One chat turn as the browser makes it, then what the worker does after it."""
    message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=text
    )

    async def stream() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(stream)()
    chat_services.generate_title(conversation_id=conversation.pk)
    chat_services.learn_from_message(message_id=message.pk)
    chat_services.summarize_conversation(conversation_id=conversation.pk)
    return message


def _text_columns() -> list[tuple[str, str]]:
    """(table, column) of every text-like column of every table, from the catalogue."""
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = ANY(%s) "
            "ORDER BY table_name, column_name",
            [list(TEXT_TYPES)],
        )
        return [(t, c) for t, c in cursor.fetchall() if t in tables]


def _columns_holding(needle: str) -> dict[tuple[str, str], int]:
    """{(table, column): rows} where the column's text holds `needle` (any case)."""
    found: dict[tuple[str, str], int] = {}
    with connection.cursor() as cursor:
        for table, column in _text_columns():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" WHERE strpos(lower("{column}"::text), %s) > 0',
                [needle.lower()],
            )
            (count,) = cursor.fetchone()
            if count:
                found[(table, column)] = count
    return found


def _redis_holding(needle: str) -> list[bytes]:
    """Redis keys whose name or value (any type) holds `needle`."""
    redis = get_redis_connection("default")
    raw = needle.encode()
    hits = []
    for key in redis.keys("*"):
        kind = redis.type(key)
        if kind == b"string":
            values = [redis.get(key) or b""]
        elif kind == b"list":
            values = redis.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [part for pair in redis.hgetall(key).items() for part in pair]
        elif kind == b"set":
            values = list(redis.smembers(key))
        elif kind == b"zset":
            values = redis.zrange(key, 0, -1)
        else:
            values = []
        if raw in key or any(raw in value for value in values):
            hits.append(key)
    return hits


def _export_parts_holding(user: Any, needle: str, *, titles: bool = False) -> set[str]:
    """The export's parts holding `needle`, the person's messages (and titles) excepted."""
    exported = export_everything(user=user)
    for conversation in exported["conversations"]:
        if titles:
            conversation.pop("title")
        for message in conversation["messages"]:
            message.pop("content", None)  # the person's own transcript
    return {part for part, value in exported.items() if needle in json.dumps(value).lower()}


def _said_twice(user: Any, fake_llm: FakeLLM, settings: Any) -> tuple[Memory, Memory, Memory]:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _model
    first = chat_services.start_conversation(user=user)
    _turn(user, first, FIRST)
    second = chat_services.start_conversation(user=user)
    _turn(user, second, SECOND)
    memories = Memory.objects.filter(user=user)
    allergy = memories.get(content__icontains=CANARY)  # learned once, confirmed the 2nd time
    return allergy, memories.get(content__contains="Berlin"), memories.get(content__contains="bees")


def _summary_run() -> None:
    """The summary sweep, as the scheduled task runs it (any idle conversation is due)."""
    for conversation_id in chat_services.conversations_to_summarize(idle=timedelta(0), every=1):
        chat_services.summarize_conversation(conversation_id=conversation_id)


def _forget_on_the_page(client: Client, memory: Memory) -> None:
    assert client.post(reverse("memory:delete", args=[memory.pk])).status_code == 200


def _forget_through_the_api(client: Client, memory: Memory) -> None:
    assert client.delete(reverse("api-memory", args=[memory.pk])).status_code == 204


@pytest.mark.parametrize(
    "forget", [_forget_on_the_page, _forget_through_the_api], ids=["page", "api"]
)
def test_a_fact_said_twice_and_summarised_leaves_no_copy_outside_the_chat_once_forgotten(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any, forget: Any
) -> None:
    allergy, berlin, bees = _said_twice(user, fake_llm, settings)
    # The scanners see every copy before: the memory, its history, the later message's
    # sibling quote, both summaries (and their copies of the titles), the recall index.
    before = _columns_holding(NEEDLE)
    for place in [
        ("memory_memory", "content"),
        ("memory_memory", "source_excerpt"),
        ("memory_memory", "search"),
        ("memory_memoryevent", "new_content"),
        ("memory_conversationsummary", "content"),
        ("memory_conversationsummary", "search"),
        ("memory_conversationsummary", "conversation_title"),
        ("chat_conversation", "title"),
        *CHAT_HISTORY,
    ]:
        assert place in before, (place, before)
    assert bees.source_excerpt == f"I keep bees and I'm allergic to {CANARY}."
    assert {"memories", "summaries"} <= _export_parts_holding(user, NEEDLE)

    forget(user_client, allergy)

    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY
    assert _redis_holding(NEEDLE) == []
    assert _export_parts_holding(user, NEEDLE) == set()
    # The rest of what was learned and summarized stays.
    berlin.refresh_from_db()
    bees.refresh_from_db()
    assert berlin.source_excerpt == "I live in Berlin."
    assert (bees.content, bees.source_excerpt) == ("I keep bees.", "")
    # Both summaries had read a message saying it (they might say it in words of their
    # own): emptied, and rebuilt by the next summary run from their conversations without
    # its sentences.
    summaries = ConversationSummary.objects.filter(user=user).order_by("conversation_id")
    assert list(summaries.values_list("content", flat=True)) == ["", ""]
    assert MemoryEvent.objects.filter(memory_ref=allergy.pk, action="deleted").exists()
    # Recall and the prompt of a later chat find nothing of it.
    recalled = memory_services.recall(user=user, query=f"What am I allergic to? {CANARY}")
    assert all(NEEDLE not in item.content.lower() for item in recalled.considered)
    _summary_run()
    assert list(summaries.values_list("content", flat=True)) == [
        "I live in Berlin.",
        "My hive is on the roof.",
    ]
    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY

    # The second conversation goes on: its next summary does not read the words again.
    second = Conversation.objects.filter(user=user).order_by("-id").first()
    assert second is not None
    _turn(user, second, "I also grow tomatoes.")
    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY
    assert ConversationSummary.objects.get(conversation_id=second.pk).content == (
        "I also grow tomatoes."
    )


def test_nothing_said_in_an_incognito_chat_or_while_paused_reaches_a_derived_table(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _model
    incognito = chat_services.start_conversation(user=user, incognito=True)
    _turn(user, incognito, f"Incognito: I'm allergic to {CANARY}x.")
    account_services.set_memory_enabled(user=user, enabled=False)
    paused = chat_services.start_conversation(user=user)
    _turn(user, paused, f"Paused: my nephew is called {CANARY}y.")
    account_services.set_memory_enabled(user=user, enabled=True)
    # Memory back on: later turns, sweeps and summaries of both conversations.
    _turn(user, paused, "I live in Berlin.")
    _turn(user, incognito, "I keep bees.")
    for message_id in Message.objects.filter(user=user, role="user").values_list("pk", flat=True):
        chat_services.learn_from_message(message_id=message_id)
    for conversation in Conversation.objects.filter(user=user):
        chat_services.summarize_conversation(conversation_id=conversation.pk)
    # Memory works for what was said with it on.
    assert Memory.objects.filter(user=user, content__contains="Berlin").exists()
    assert ConversationSummary.objects.filter(user=user, conversation_id=paused.pk).exists()

    # The conversations' own titles are part of those chats (the model titles an incognito
    # chat too, from its first message); nothing derived from them holds the words.
    chats = CHAT_HISTORY | {("chat_conversation", "title")}
    for needle in (f"{CANARY}x", f"{CANARY}y"):
        assert set(_columns_holding(needle)) <= chats, needle
        assert _redis_holding(needle) == []
        assert _export_parts_holding(user, needle, titles=True) == set()
    recalled = memory_services.recall(user=user, query=f"allergic nephew {CANARY}")
    assert all(NEEDLE not in item.content.lower() for item in recalled.considered)


# --- A fact about a pet: its entity's attribute holds the words ---

PET_FACT = f"My dog Bruno is allergic to {CANARY}"


def _forget_in_the_chat(client: Client, memory: Memory) -> None:
    user = memory.user
    _, reply = chat_services.send_message(
        user=user,
        conversation_id=chat_services.start_conversation(user=user).pk,
        content=f"Forget that {PET_FACT}.",
    )

    async def stream() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(stream)()
    assert not Memory.objects.filter(pk=memory.pk).exists()


def _forget_as_contradicted(client: Client, memory: Memory) -> None:
    memory_services.forget(
        user=memory.user, memory_id=memory.pk, actor="extractor", source_message_id=None
    )


def _let_it_expire(client: Client, memory: Memory) -> None:
    RetentionPolicy.objects.update_or_create(kind=memory.kind, defaults={"ttl_days": 30})
    Memory.objects.filter(pk=memory.pk).update(expires_at=timezone.now() - timedelta(days=1))
    assert retention.run_retention().expired.get(memory.kind) == 1


def _trim_over_the_cap(client: Client, memory: Memory) -> None:
    living = Memory.objects.filter(user=memory.user, kind=memory.kind).count()
    RetentionPolicy.objects.update_or_create(
        kind=memory.kind, defaults={"max_per_user": living - 1}
    )
    Memory.objects.filter(pk=memory.pk).update(importance=0.0)
    assert retention.run_retention().trimmed == {memory.kind: 1}


@pytest.mark.parametrize(
    "forget",
    [
        _forget_on_the_page,
        _forget_through_the_api,
        _forget_in_the_chat,
        _forget_as_contradicted,
        _let_it_expire,
        _trim_over_the_cap,
    ],
    ids=["page", "api", "chat", "contradiction", "expiry", "cap"],
)
def test_a_forgotten_fact_about_a_pet_leaves_no_attribute_or_entity_holding_it(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any, forget: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _model
    _turn(user, chat_services.start_conversation(user=user), f"{PET_FACT}. I live in Berlin.")
    allergy = Memory.objects.get(user=user, content__icontains=CANARY)
    bruno = Entity.objects.get(user=user, name="Bruno")
    assert bruno.attributes == {"species": "dog", "allergy": CANARY}
    assert ("memory_entity", "attributes") in _columns_holding(NEEDLE)

    forget(user_client, allergy)

    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY
    assert _redis_holding(NEEDLE) == []
    assert _export_parts_holding(user, NEEDLE) == set()
    # Everything known of Bruno came from the forgotten fact: he goes, with his history's
    # words. Berlin, which a living memory names, stays.
    assert not Entity.objects.filter(user=user, name="Bruno").exists()
    assert _columns_holding("Bruno").keys() <= CHAT_HISTORY
    assert Entity.objects.filter(user=user, name="Berlin").exists()
    assert Memory.objects.filter(user=user, content__contains="Berlin").exists()


# --- A summary that says the fact in words of its own ---


def _rewording_model(request: dict[str, Any]) -> str | dict[str, Any]:
    """As `_model`, but its summaries say the allergy in other words (no word-match finds)."""
    reply = _model(request)
    if isinstance(reply, str) and request["messages"][-1]["content"].startswith("Summarize"):
        return reply.replace("I'm allergic to", "I stay away from").replace(
            "allergic to", "avoiding"
        )
    return reply


def test_a_summary_rewording_a_forgotten_fact_is_rebuilt_without_it(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _rewording_model
    first = chat_services.start_conversation(user=user)
    _turn(user, first, FIRST)
    summary = ConversationSummary.objects.get(conversation_id=first.pk)
    assert summary.content == f"I live in Berlin. I stay away from {CANARY}."
    # Said again in a conversation not summarized yet when the fact is forgotten.
    later = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(
        user=user, conversation_id=later.pk, content=f"I keep bees. {FACT}"
    )
    Message.objects.filter(pk=reply.pk).update(status="complete", content=f"So, no {CANARY}!")
    assert not ConversationSummary.objects.filter(conversation_id=later.pk).exists()
    allergy = Memory.objects.get(user=user, content__icontains=CANARY)

    _forget_through_the_api(user_client, allergy)

    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY
    assert _export_parts_holding(user, NEEDLE) == set()
    summary.refresh_from_db()
    assert (summary.content, summary.last_message_id) == ("", 0)
    # The sweep rebuilds it from the conversation without the fact's sentence (nor the
    # reply to it), and the later conversation's first summary never reads it either.
    _summary_run()
    summary.refresh_from_db()
    assert summary.content == "I live in Berlin."
    assert ConversationSummary.objects.get(conversation_id=later.pk).content == "I keep bees."
    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY
    # The conversations go on, and their summaries roll forward as before.
    _turn(user, first, "I also grow tomatoes.")
    assert summary.__class__.objects.get(pk=summary.pk).content == "I also grow tomatoes."
    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY


def test_a_summary_older_than_the_recorded_positions_is_rebuilt_only_after_them(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _rewording_model
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, "I live in Berlin.")
    summary = ConversationSummary.objects.get(conversation_id=conversation.pk)
    # As the migration leaves a summary written before: what it had read may hold facts
    # forgotten then, whose sentences no record says; it is never read again.
    floor = summary.last_message_id
    ConversationSummary.objects.filter(pk=summary.pk).update(forgotten_spans={"floor": floor})
    _turn(user, conversation, f"I keep bees. {FACT}")
    summary.refresh_from_db()
    assert summary.content == f"I keep bees. I stay away from {CANARY}."
    allergy = Memory.objects.get(user=user, content__icontains=CANARY)

    _forget_through_the_api(user_client, allergy)

    summary.refresh_from_db()
    assert (summary.content, summary.last_message_id) == ("", floor)
    _summary_run()
    summary.refresh_from_db()
    assert summary.content == "I keep bees."
    assert set(_columns_holding(NEEDLE)) <= CHAT_HISTORY
