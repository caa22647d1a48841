"""Forget means gone: after each forget action, no table and no export holds the words.

Each test plants a unique canary in the text being forgotten, checks the scanners find it,
forgets it through the page, the API or the service that does it, then scans every table of
the database (every row, every column, as text) and the person's export for it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import services as chat_services
from chat.export import export_everything
from chat.models import Message
from memory import entities as entity_services
from memory import extraction, retention
from memory import services as memory_services
from memory.models import (
    ConversationSummary,
    Entity,
    EntityEvent,
    Memory,
    MemoryEvent,
    RetentionPolicy,
)
from tests.accounts.test_erasure import _rows_containing
from tests.fake_llm import FakeLLM, fake_embedding

pytestmark = pytest.mark.django_db

CANARY = "quokka-5e1b"


def _vector(text: str) -> list[float]:
    return fake_embedding(text, 384)


def _traces(user: Any, needle: str = CANARY) -> dict[str, int]:
    """Where `needle` still is: every table, and the person's export."""
    found = _rows_containing(needle)
    if needle in json.dumps(export_everything(user=user)):
        found["export"] = 1
    return found


def _corrected_and_pinned(user: Any) -> Memory:
    """A memory with a history: added, corrected twice, pinned (every event holds its text)."""
    memory = memory_services.remember(
        user=user, content=f"My locker nickname is {CANARY}", embedding=_vector("a")
    )
    memory_services.update_memory(
        user=user, memory_id=memory.pk, content=f"My gym nickname is {CANARY}",
        embedding=_vector("b"),
    )  # fmt: skip
    memory_services.update_memory(
        user=user, memory_id=memory.pk, content=f"My climbing nickname is {CANARY}",
        embedding=_vector("c"),
    )  # fmt: skip
    memory_services.set_pinned(user=user, memory_id=memory.pk, pinned=True)
    _learned_with(user, memory)
    return memory


def _learned_with(user: Any, memory: Memory) -> Memory:
    """A memory learned in the same turn: as extraction does, it can be found by the other's
    words (its recall keys hold the other's text). A preference, so no fact policy or cap of
    these tests touches it."""
    sibling = memory_services.remember(
        user=user, kind="preference", content="I like quiet gyms", embedding=_vector("s")
    )
    memory_services.enrich_recall_keys(
        user=user, memory_id=sibling.pk, facts=[Memory.objects.get(pk=memory.pk).content]
    )
    sibling.refresh_from_db()
    assert CANARY in sibling.recall_keys
    return sibling


def test_deleting_a_memory_on_the_page_leaves_its_words_nowhere(
    user: Any, user_client: Client
) -> None:
    memory = _corrected_and_pinned(user)
    assert "memory_memoryevent" in _traces(user)

    response = user_client.post(reverse("memory:delete", args=[memory.pk]))

    assert response.status_code == 200
    assert _traces(user) == {}
    # The history still says what happened, when and by whom.
    actions = MemoryEvent.objects.filter(memory_ref=memory.pk).values_list("action", "actor")
    assert sorted(actions) == [
        ("added", "user"), ("deleted", "user"), ("pinned", "user"), ("updated", "user"),
        ("updated", "user"),
    ]  # fmt: skip


def test_deleting_a_memory_through_the_api_leaves_its_words_nowhere(
    user: Any, user_client: Client
) -> None:
    memory = _corrected_and_pinned(user)

    response = user_client.delete(reverse("api-memory", args=[memory.pk]))

    assert response.status_code == 204
    assert _traces(user) == {}
    # A deleted memory has no history to read through the API (the page's history keeps the
    # text-free "deleted" event).
    history = user_client.get(reverse("api-memory-history", args=[memory.pk]))
    assert history.status_code == 404
    assert CANARY not in history.content.decode()


def test_a_fact_the_extractor_deletes_as_contradicted_leaves_its_words_nowhere(
    user: Any, fake_llm: FakeLLM
) -> None:
    memory = _corrected_and_pinned(user)
    memory_services.set_pinned(user=user, memory_id=memory.pk, pinned=False)

    memory_services.forget(user=user, memory_id=memory.pk, actor="extractor", source_message_id=7)

    assert _traces(user) == {}
    deleted = MemoryEvent.objects.get(memory_ref=memory.pk, action="deleted")
    assert (deleted.actor, deleted.source_message_id) == ("extractor", 7)


def test_a_corrected_memory_leaves_its_old_words_in_no_other_memorys_recall_keys(
    user: Any, user_client: Client
) -> None:
    memory = memory_services.remember(
        user=user, content=f"My locker nickname is {CANARY}", embedding=_vector("a")
    )
    sibling = _learned_with(user, memory)

    response = user_client.post(
        reverse("memory:edit", args=[memory.pk]), {"content": "My locker nickname is Bolt"}
    )

    assert response.status_code == 200
    sibling.refresh_from_db()
    assert sibling.recall_keys == ""
    assert sibling.content == "I like quiet gyms"
    # While the corrected memory lives, its own history keeps the old text, and only there.
    assert _rows_containing(CANARY) == {"memory_memoryevent": 2}
    recalled = memory_services.recall(user=user, query=CANARY, embedding=_vector("q"))
    assert sibling.pk not in [i.id for i in recalled.considered if i.text_position is not None]


def test_a_memory_removed_by_retention_leaves_its_words_nowhere(user: Any) -> None:
    RetentionPolicy.objects.update_or_create(kind="fact", defaults={"ttl_days": 30})
    memory = _corrected_and_pinned(user)
    memory_services.set_pinned(user=user, memory_id=memory.pk, pinned=False)
    Memory.objects.filter(pk=memory.pk).update(expires_at=timezone.now() - timedelta(days=1))

    run = retention.run_retention()

    assert run.expired == {"fact": 1}
    assert _traces(user) == {}
    assert MemoryEvent.objects.filter(memory_ref=memory.pk, action="expired").exists()


def test_a_memory_trimmed_over_the_cap_leaves_its_words_nowhere(user: Any) -> None:
    RetentionPolicy.objects.update_or_create(kind="fact", defaults={"max_per_user": 1})
    memory = _corrected_and_pinned(user)
    memory_services.set_pinned(user=user, memory_id=memory.pk, pinned=False)
    Memory.objects.filter(pk=memory.pk).update(importance=0.0)
    memory_services.remember(user=user, content="I keep bees on the roof", embedding=_vector("d"))

    run = retention.run_retention()

    assert run.trimmed == {"fact": 1}
    assert _traces(user) == {}


def test_deleting_an_entity_leaves_its_name_and_values_nowhere(
    user: Any, user_client: Client
) -> None:
    entity, _ = entity_services.upsert_entity(
        user=user, name=f"Rex {CANARY}", type="pet", attributes={"species": "dog"}
    )
    entity_services.update_entity(
        user=user, entity_id=entity.pk, attributes={"species": "dog", "toy": f"ball {CANARY}"}
    )
    assert "memory_entityevent" in _traces(user)

    response = user_client.post(reverse("memory:delete-entity", args=[entity.pk]))

    assert response.status_code == 200
    assert _traces(user) == {}
    assert _traces(user, "species") == {}
    assert sorted(
        EntityEvent.objects.filter(entity_ref=entity.pk).values_list("action", flat=True)
    ) == ["added", "deleted", "updated", "updated"]


def test_a_stale_entity_removed_by_retention_leaves_its_name_nowhere(user: Any) -> None:
    RetentionPolicy.objects.update_or_create(kind="fact", defaults={"ttl_days": 30})
    entity, _ = entity_services.upsert_entity(
        user=user, name=f"Café {CANARY}", type="place", attributes={"street": "Rua Augusta"}
    )
    Entity.objects.filter(pk=entity.pk).update(updated_at=timezone.now() - timedelta(days=60))

    retention.run_retention()

    assert not Entity.objects.filter(pk=entity.pk).exists()
    assert _traces(user) == {}
    assert _traces(user, "Rua Augusta") == {}


def _facts(request: dict[str, Any]) -> str | dict[str, Any]:
    schema = (request.get("response_format") or {}).get("schema") or {}
    if "facts" in schema.get("properties", {}):
        return {
            "facts": [{"kind": "fact", "content": "I keep bees on the roof"}],
            "entities": [{"name": CANARY, "type": "other", "attributes": {}}],
        }
    if "decisions" in schema.get("properties", {}):
        return {"decisions": []}
    return f"I told the assistant my codename {CANARY} and that I keep bees."


def test_deleting_a_conversation_takes_its_summary_and_quotes_and_keeps_its_memories(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _facts
    conversation = chat_services.start_conversation(user=user)
    # The canary is in a question, which the extractor never learns, so only the summary
    # holds it (a statement "my codename is …" would be a memory of its own); the memory
    # quotes only the sentence it was learned from.
    said = f"Is {CANARY} a good name for a hive? I keep bees on the roof."
    message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=said
    )
    Message.objects.filter(pk=reply.pk).update(status="complete", content="Lovely bees.")
    extraction.extract(
        user=user, text=said, source_message_id=message.pk, source_conversation_id=conversation.pk
    )
    assert chat_services.summarize_conversation(conversation_id=conversation.pk)
    bees = Memory.objects.get(user=user, content="I keep bees on the roof.")
    assert bees.source_excerpt == "I keep bees on the roof."
    for table in ("memory_conversationsummary", "chat_message"):
        assert table in _traces(user)
    # The memory entity named by the canary is the person's to delete, separately.
    Entity.objects.filter(user=user).delete()
    EntityEvent.objects.filter(user=user).delete()

    response = user_client.post(reverse("chat:delete", args=[conversation.pk]))

    assert response.status_code in (200, 302)
    assert _traces(user) == {}
    assert not ConversationSummary.objects.filter(user=user).exists()
    # The memory stays, its provenance says where it came from, everywhere it is shown.
    bees.refresh_from_db()
    assert (bees.source_excerpt, bees.source_message_id, bees.source_conversation_id) == (
        "", None, None,
    )  # fmt: skip
    assert bees.source_deleted
    page = user_client.get(reverse("memory:index")).content.decode()
    assert "Learned from a deleted conversation" in page
    api = user_client.get(reverse("api-memories")).json()["results"]
    provenance = next(m["provenance"] for m in api if m["id"] == bees.pk)
    assert provenance["from"] == "a deleted conversation"
    assert provenance["conversation_deleted"] is True and provenance["excerpt"] == ""
    exported = next(m for m in export_everything(user=user)["memories"] if m["id"] == bees.pk)
    assert exported["source"] == provenance
    # And a later conversation recalls nothing of it.
    recalled = memory_services.recall(user=user, query=f"codename {CANARY}")
    assert not recalled.summaries


def test_forget_everything_leaves_no_memory_summary_entity_or_history(
    user: Any, user_client: Client
) -> None:
    _corrected_and_pinned(user)
    entity_services.upsert_entity(user=user, name=f"Rex {CANARY}", attributes={"kind": "dog"})
    memory_services.save_summary(
        user=user, conversation_id=991, conversation_title=f"About {CANARY}",
        content=f"I talked about {CANARY}.", last_message_id=1, message_count=2,
    )  # fmt: skip
    traces = _traces(user)
    for table in ("memory_memory", "memory_memoryevent", "memory_conversationsummary",
                  "memory_entity", "memory_entityevent"):  # fmt: skip
        assert table in traces

    response = user_client.post(reverse("memory:forget-all"), {"confirm": "forget everything"})

    assert response.status_code in (200, 302)
    assert _traces(user) == {}


# --- One message, two memories: forgetting one leaves its words in no other's quote ---

TWO_FACTS = f"I live in Berlin. I'm allergic to {CANARY}."
TRANSCRIPT = {"chat_message", "chat_conversation"}


def _outside_transcript(user: Any) -> set[str]:
    """Where the canary is besides the person's conversations: tables and export parts."""
    exported = export_everything(user=user)
    parts = {f"export {k}" for k, v in exported.items() if CANARY in json.dumps(v)}
    return (set(_rows_containing(CANARY)) | parts) - TRANSCRIPT - {"export conversations"}


def _sentences_as_facts(request: dict[str, Any]) -> str | dict[str, Any]:
    """A model that proposes each sentence it is shown as a fact, and answers 'Noted.'"""
    schema = (request.get("response_format") or {}).get("schema") or {}
    if "facts" in schema.get("properties", {}):
        text = request["messages"][-1]["content"]
        facts = [s.strip() for s in text.split(". ") if s.strip()]
        return {"facts": [{"kind": "fact", "content": f} for f in facts], "entities": []}
    if "decisions" in schema.get("properties", {}):
        return {"decisions": []}
    return "Noted."


def _two_facts(user: Any, fake_llm: FakeLLM) -> tuple[Memory, Memory]:
    """TWO_FACTS said in a chat and learned by the real extraction: (Berlin, allergy)."""
    fake_llm.responder = _sentences_as_facts
    conversation = chat_services.start_conversation(user=user)
    message, _ = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=TWO_FACTS
    )
    extraction.extract(
        user=user,
        text=TWO_FACTS,
        source_message_id=message.pk,
        source_conversation_id=conversation.pk,
    )
    memories = Memory.objects.filter(user=user, source_message_id=message.pk)
    berlin = memories.get(content__contains="Berlin")
    allergy = memories.get(content__contains=CANARY)
    return berlin, allergy


def _forget_on_the_page(user: Any, client: Client, memory: Memory) -> None:
    assert client.post(reverse("memory:delete", args=[memory.pk])).status_code == 200


def _forget_through_the_api(user: Any, client: Client, memory: Memory) -> None:
    assert client.delete(reverse("api-memory", args=[memory.pk])).status_code == 204


def _forget_in_the_chat(user: Any, client: Client, memory: Memory) -> None:
    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=f"Forget that I'm allergic to {CANARY}"
    )

    async def answer() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(answer)()
    assert not Memory.objects.filter(pk=memory.pk).exists()


def _forget_as_contradicted(user: Any, client: Client, memory: Memory) -> None:
    memory_services.forget(user=user, memory_id=memory.pk, actor="extractor", source_message_id=1)


def _expire(user: Any, client: Client, memory: Memory) -> None:
    RetentionPolicy.objects.update_or_create(kind="fact", defaults={"ttl_days": 30})
    Memory.objects.filter(pk=memory.pk).update(expires_at=timezone.now() - timedelta(days=1))
    assert retention.run_retention().expired == {"fact": 1}


def _trim(user: Any, client: Client, memory: Memory) -> None:
    RetentionPolicy.objects.update_or_create(kind="fact", defaults={"max_per_user": 1})
    Memory.objects.filter(pk=memory.pk).update(importance=0.0)
    assert retention.run_retention().trimmed == {"fact": 1}


FORGET_PATHS = [
    _forget_on_the_page,
    _forget_through_the_api,
    _forget_in_the_chat,
    _forget_as_contradicted,
    _expire,
    _trim,
]


def test_each_memory_of_a_message_quotes_only_its_own_sentence(
    user: Any, fake_llm: FakeLLM
) -> None:
    berlin, allergy = _two_facts(user, fake_llm)

    assert berlin.source_excerpt == "I live in Berlin."
    assert allergy.source_excerpt == f"I'm allergic to {CANARY}."


@pytest.mark.parametrize("forget", FORGET_PATHS, ids=lambda f: f.__name__.strip("_"))
def test_forgetting_one_fact_of_a_message_leaves_it_in_no_siblings_quote(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any, forget: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    berlin, allergy = _two_facts(user, fake_llm)
    assert "memory_memory" in _traces(user)

    forget(user, user_client, allergy)

    # Only the person's own transcript keeps the words.
    assert _outside_transcript(user) == set()
    berlin.refresh_from_db()
    assert berlin.source_excerpt == "I live in Berlin."
    assert berlin.source_message_id == allergy.source_message_id


@pytest.mark.parametrize("forget", FORGET_PATHS, ids=lambda f: f.__name__.strip("_"))
def test_forgetting_one_fact_takes_its_sentence_out_of_quotes_written_whole(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any, forget: Any
) -> None:
    # Quotes written before they were cut to their sentences hold the whole message.
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    berlin, allergy = _two_facts(user, fake_llm)
    Memory.objects.filter(pk__in=[berlin.pk, allergy.pk]).update(source_excerpt=TWO_FACTS)

    forget(user, user_client, allergy)

    assert _outside_transcript(user) == set()
    berlin.refresh_from_db()
    assert berlin.source_excerpt == "I live in Berlin."


def test_a_sentence_saying_two_things_goes_from_both_quotes_when_one_is_forgotten(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    said = f"I live in Berlin and I'm allergic to {CANARY}. I keep bees."
    fake_llm.responder = lambda request: (
        {
            "facts": [
                {"kind": "fact", "content": "I live in Berlin"},
                {"kind": "fact", "content": f"I'm allergic to {CANARY}"},
                {"kind": "fact", "content": "I keep bees"},
            ],
            "entities": [],
        }
        if "facts" in str(request.get("response_format"))
        else {"decisions": []}
    )
    conversation = chat_services.start_conversation(user=user)
    message, _ = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=said
    )
    extraction.extract(
        user=user, text=said, source_message_id=message.pk, source_conversation_id=conversation.pk
    )
    berlin = Memory.objects.get(user=user, content__contains="Berlin")
    bees = Memory.objects.get(user=user, content__contains="bees")
    assert berlin.source_excerpt == f"I live in Berlin and I'm allergic to {CANARY}."
    assert bees.source_excerpt == "I keep bees."
    allergy = Memory.objects.get(user=user, content__contains=CANARY)

    _forget_on_the_page(user, user_client, allergy)

    assert _outside_transcript(user) == set()
    berlin.refresh_from_db()
    bees.refresh_from_db()
    # Berlin's only sentence also said the allergy: its quote goes, its link stays.
    assert (berlin.source_excerpt, berlin.source_message_id) == ("", message.pk)
    assert bees.source_excerpt == "I keep bees."


def test_forgetting_a_fact_leaves_another_persons_quotes_of_the_same_message_id_alone(
    user: Any, other_user: Any, fake_llm: FakeLLM
) -> None:
    _, allergy = _two_facts(user, fake_llm)
    theirs = memory_services.remember(
        user=other_user,
        content="I live in Lyon",
        source_message_id=allergy.source_message_id,
        source_excerpt=f"I live in Lyon. I'm allergic to {CANARY}.",
        embedding=_vector("l"),
    )
    # Their quote holds the very sentence (as one written whole would): it is not ours to cut.
    whole = f"I live in Lyon. I'm allergic to {CANARY}."
    Memory.objects.filter(pk=theirs.pk).update(source_excerpt=whole)

    memory_services.forget(user=user, memory_id=allergy.pk)

    theirs.refresh_from_db()
    assert theirs.source_excerpt == whole


def test_a_memory_changed_by_a_later_message_quotes_that_message(
    user: Any, fake_llm: FakeLLM
) -> None:
    # Quote and link move together: a quote written whole from the first message would
    # otherwise outlive a forget scoped to that message.
    berlin, allergy = _two_facts(user, fake_llm)
    Memory.objects.filter(pk=berlin.pk).update(source_excerpt=TWO_FACTS)
    said = "I live in Lisbon now. I keep bees."
    conversation = chat_services.start_conversation(user=user)
    message, _ = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=said
    )
    extraction.extract(user=user, text=said, source_message_id=message.pk)
    berlin.refresh_from_db()
    assert "Lisbon" in berlin.content and berlin.source_message_id == message.pk
    assert berlin.source_excerpt == "I live in Lisbon now."

    memory_services.forget(user=user, memory_id=allergy.pk)

    assert _outside_transcript(user) == set()
