"""The memory JSON API under /api/ and the export: every endpoint, isolation, stale edits."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

from accounts import tokens
from chat import services as chat_services
from chat.models import Conversation, Message
from memory import embeddings, entities, services
from memory.models import (
    ConversationSummary,
    Entity,
    EntityEvent,
    ExtractionRun,
    Memory,
    MemoryEvent,
)
from tests.factories import PASSWORD, UserFactory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

JSON = "application/json"
MEMORIES = "/api/memories/"


def _memory_url(memory_id: int, suffix: str = "") -> str:
    return f"/api/memories/{memory_id}/{suffix}"


def _remember(user: Any, content: str, kind: str = Memory.Kind.FACT, **extra: Any) -> Memory:
    return services.remember(user=user, content=content, kind=kind, **extra)


def _patch(client: Client, memory_id: int, body: dict[str, Any]) -> Any:
    return client.patch(_memory_url(memory_id), json.dumps(body), content_type=JSON)


def _summary(user: Any, title: str, content: str) -> ConversationSummary:
    conversation = chat_services.start_conversation(user=user, title=title)
    return services.save_summary(
        user=user,
        conversation_id=conversation.pk,
        conversation_title=title,
        content=content,
        last_message_id=0,
        message_count=2,
    )


def _contents(response: Any) -> list[str]:
    return [item["content"] for item in response.json()["results"]]


# --- List and search ---


def test_list_returns_my_live_memories_with_provenance_and_never_anyone_elses(
    user: Any, other_user: Any, user_client: Client
) -> None:
    conversation = chat_services.start_conversation(user=user)
    lisbon = _remember(
        user,
        "I live in Lisbon",
        Memory.Kind.PROFILE,
        source_message_id=41,
        source_conversation_id=conversation.pk,
        source_excerpt="I live in Lisbon and I love hiking.",
    )
    _remember(user, "I love hiking", Memory.Kind.PREFERENCE)
    expired = _remember(user, "I am training for a marathon", Memory.Kind.TASK)
    Memory.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    _remember(other_user, "I live in Oslo", Memory.Kind.PROFILE)

    response = user_client.get(MEMORIES)

    assert response.status_code == 200
    assert sorted(_contents(response)) == ["I live in Lisbon", "I love hiking"]
    first = next(item for item in response.json()["results"] if item["id"] == lisbon.pk)
    assert first["kind"] == "profile"
    assert first["provenance"] == {
        "message_id": 41,
        "conversation_id": conversation.pk,
        "excerpt": "I live in Lisbon and I love hiking.",
        "conversation_deleted": False,
        "from": "a conversation",
    }


def test_list_filters_by_kind(user: Any, user_client: Client) -> None:
    _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    _remember(user, "I love hiking", Memory.Kind.PREFERENCE)
    _remember(user, "I prefer metric units", Memory.Kind.PREFERENCE)

    response = user_client.get(MEMORIES, {"kind": "preference"})

    assert response.status_code == 200
    assert sorted(_contents(response)) == ["I love hiking", "I prefer metric units"]
    assert {item["kind"] for item in response.json()["results"]} == {"preference"}


def test_list_with_an_unknown_kind_is_400_naming_it(user: Any, user_client: Client) -> None:
    response = user_client.get(MEMORIES, {"kind": "gossip"})

    assert response.status_code == 400
    assert "gossip" in response.json()["detail"]


def test_search_finds_a_memory_by_meaning_without_shared_words(
    user: Any, other_user: Any, user_client: Client
) -> None:
    _remember(user, "I have a dog named Rex")
    _remember(user, "I work at Acme Corp")
    _remember(user, "My favourite colour is green")
    _remember(other_user, "I have a cat named Tom")

    response = user_client.get(MEMORIES, {"q": "what pets do I have"})

    assert response.status_code == 200
    assert _contents(response) == ["I have a dog named Rex"]


def test_search_finds_a_memory_by_its_words(user: Any, user_client: Client) -> None:
    _remember(user, "I have a dog named Rex")
    _remember(user, "I work at Acme Corp")

    response = user_client.get(MEMORIES, {"q": "acme corp"})

    assert response.status_code == 200
    assert _contents(response) == ["I work at Acme Corp"]


def test_search_can_be_narrowed_by_kind(user: Any, user_client: Client) -> None:
    _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    _remember(user, "I would like to live in Lisbon one day", Memory.Kind.TASK)

    response = user_client.get(MEMORIES, {"q": "Lisbon", "kind": "task"})

    assert _contents(response) == ["I would like to live in Lisbon one day"]


# --- Create ---


def test_create_returns_201_with_the_memory_and_records_its_addition(
    user: Any, user_client: Client
) -> None:
    response = user_client.post(
        MEMORIES, {"content": "  I prefer   metric units ", "kind": "preference"}, content_type=JSON
    )

    assert response.status_code == 201
    body = response.json()
    assert body["content"] == "I prefer metric units"
    assert body["kind"] == "preference"
    memory = Memory.objects.get(pk=body["id"], user=user)
    assert memory.content == "I prefer metric units"
    assert np.allclose(memory.embedding, embeddings.embed_one("I prefer metric units"), atol=1e-5)
    event = MemoryEvent.objects.get(memory_ref=memory.pk)
    assert (event.action, event.actor, event.new_content) == (
        "added",
        "user",
        "I prefer metric units",
    )


def test_create_defaults_to_a_fact(user: Any, user_client: Client) -> None:
    response = user_client.post(MEMORIES, {"content": "I have two sisters"}, content_type=JSON)

    assert response.status_code == 201
    assert response.json()["kind"] == "fact"


def test_create_an_empty_memory_is_400_with_a_message(user: Any, user_client: Client) -> None:
    response = user_client.post(MEMORIES, {"content": "   "}, content_type=JSON)

    assert response.status_code == 400
    assert response.json()["detail"] == "A memory cannot be empty."
    assert not Memory.objects.filter(user=user).exists()


def test_create_a_memory_over_the_limit_is_400_with_a_message(
    user: Any, user_client: Client, settings: Any
) -> None:
    settings.MEMORY_MAX_CHARS = 20

    response = user_client.post(MEMORIES, {"content": "x" * 21}, content_type=JSON)

    assert response.status_code == 400
    assert response.json()["detail"] == ("A memory can be at most 20 characters (this one has 21).")
    assert not Memory.objects.filter(user=user).exists()


def test_create_with_an_unknown_kind_is_400(user: Any, user_client: Client) -> None:
    response = user_client.post(
        MEMORIES, {"content": "I like tea", "kind": "gossip"}, content_type=JSON
    )

    assert response.status_code == 400
    assert "kind" in response.json()["errors"]
    assert not Memory.objects.filter(user=user).exists()


# --- One memory ---


def test_get_returns_one_memory(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)

    response = user_client.get(_memory_url(memory.pk))

    assert response.status_code == 200
    assert response.json()["id"] == memory.pk
    assert response.json()["content"] == "I live in Lisbon"
    assert response.json()["pinned"] is False


def test_patch_content_re_embeds_the_memory_and_keeps_the_old_text_in_history(
    user: Any, user_client: Client
) -> None:
    memory = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    before = np.array(memory.embedding)

    response = _patch(user_client, memory.pk, {"content": "I live in Porto"})

    assert response.status_code == 200
    assert response.json()["content"] == "I live in Porto"
    memory.refresh_from_db()
    assert memory.content == "I live in Porto"
    assert not np.allclose(memory.embedding, before)
    assert np.allclose(memory.embedding, embeddings.embed_one("I live in Porto"), atol=1e-5)
    history = user_client.get(_memory_url(memory.pk, "history/")).json()["results"]
    assert history[0]["action"] == "updated"
    assert history[0]["old_content"] == "I live in Lisbon"
    assert history[0]["new_content"] == "I live in Porto"


def test_patch_kind_changes_only_the_kind(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I love hiking")

    response = _patch(user_client, memory.pk, {"kind": "preference"})

    assert response.status_code == 200
    memory.refresh_from_db()
    assert (memory.kind, memory.content) == ("preference", "I love hiking")


def test_patch_pinned_pins_and_unpins_with_history(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I live in Lisbon")
    Memory.objects.filter(pk=memory.pk).update(expires_at=timezone.now() - timedelta(days=1))

    pinned = _patch(user_client, memory.pk, {"pinned": True})

    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    memory.refresh_from_db()
    assert memory.pinned is True
    # A pinned memory never expires: it is listed although its expiry has passed.
    assert _contents(user_client.get(MEMORIES)) == ["I live in Lisbon"]

    unpinned = _patch(user_client, memory.pk, {"pinned": False})

    assert unpinned.status_code == 200 and unpinned.json()["pinned"] is False
    memory.refresh_from_db()
    assert memory.pinned is False
    history = user_client.get(_memory_url(memory.pk, "history/")).json()["results"]
    actions = [e["action"] for e in history]
    assert actions == ["unpinned", "pinned", "added"]


def test_patch_with_nothing_to_change_changes_nothing(user: Any, user_client: Client) -> None:
    # PATCH requires no field (as the schema says): an empty one returns the memory as it is.
    memory = _remember(user, "I live in Lisbon")

    response = _patch(user_client, memory.pk, {})

    assert response.status_code == 200
    assert response.json()["content"] == "I live in Lisbon"
    assert MemoryEvent.objects.filter(memory_ref=memory.pk).count() == 1


def test_patch_to_empty_text_is_400_and_keeps_the_memory(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I live in Lisbon")

    response = _patch(user_client, memory.pk, {"content": " "})

    assert response.status_code == 400
    assert response.json()["detail"] == "A memory cannot be empty."
    memory.refresh_from_db()
    assert memory.content == "I live in Lisbon"


def test_patch_of_a_memory_deleted_meanwhile_is_404_with_a_clear_message(
    user: Any, user_client: Client
) -> None:
    memory = _remember(user, "I live in Lisbon")
    services.forget(user=user, memory_id=memory.pk)  # e.g. from another tab

    for body in ({"content": "I live in Porto"}, {"pinned": True}, {"kind": "profile"}):
        response = _patch(user_client, memory.pk, body)

        assert response.status_code == 404, body
        assert "no longer exists" in response.json()["detail"]
    assert not Memory.objects.filter(pk=memory.pk).exists()


def test_delete_is_204_and_the_memory_is_gone_from_recall_and_the_list(
    user: Any, user_client: Client
) -> None:
    lisbon = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    hiking = _remember(user, "I love hiking", Memory.Kind.PREFERENCE)
    assert lisbon.pk in services.recall(user=user, query="where do I live").memory_ids

    response = user_client.delete(_memory_url(lisbon.pk))

    assert response.status_code == 204
    assert services.recall(user=user, query="where do I live").memory_ids == [hiking.pk]
    assert _contents(user_client.get(MEMORIES)) == ["I love hiking"]
    assert user_client.get(_memory_url(lisbon.pk)).status_code == 404
    assert user_client.delete(_memory_url(lisbon.pk)).status_code == 404


def test_history_lists_every_change_newest_first(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I live in Lisbon")
    services.update_memory(user=user, memory_id=memory.pk, content="I live in Porto")

    response = user_client.get(_memory_url(memory.pk, "history/"))

    assert response.status_code == 200
    history = response.json()["results"]
    assert [e["action"] for e in history] == ["updated", "added"]
    assert [e["actor"] for e in history] == ["user", "user"]


def test_the_history_of_a_deleted_memory_is_404(user: Any, user_client: Client) -> None:
    # A deleted resource is gone with everything under it (what the schema promises).
    memory = _remember(user, "I live in Lisbon")
    services.forget(user=user, memory_id=memory.pk)

    response = user_client.get(_memory_url(memory.pk, "history/"))

    assert response.status_code == 404


def test_forget_all_needs_confirmation(user: Any, user_client: Client) -> None:
    _remember(user, "I live in Lisbon")

    for body in ({"confirm": False}, {}):
        response = user_client.post(f"{MEMORIES}forget-all", body, content_type=JSON)

        assert response.status_code == 400
    refused = user_client.post(f"{MEMORIES}forget-all", {"confirm": False}, content_type=JSON)
    assert "confirm" in refused.json()["errors"]
    assert Memory.objects.filter(user=user).count() == 1


def test_forget_all_deletes_my_memories_summaries_and_history_only(
    user: Any, other_user: Any, user_client: Client
) -> None:
    _remember(user, "I live in Lisbon")
    _remember(user, "I love hiking")
    gone = _remember(user, "I am learning Portuguese")
    services.forget(user=user, memory_id=gone.pk)
    _summary(user, "Trip", "I planned a trip to Sintra.")
    theirs = _remember(other_user, "I live in Oslo")
    their_summary = _summary(other_user, "Fjords", "I asked about fjords.")

    response = user_client.post(f"{MEMORIES}forget-all", {"confirm": True}, content_type=JSON)

    assert response.status_code == 200
    assert response.json() == {"deleted": 2}
    assert not Memory.objects.filter(user=user).exists()
    assert not MemoryEvent.objects.filter(user=user).exists()
    assert not ConversationSummary.objects.filter(user=user).exists()
    assert Memory.objects.filter(pk=theirs.pk).exists()
    assert MemoryEvent.objects.filter(memory_ref=theirs.pk).exists()
    assert ConversationSummary.objects.filter(pk=their_summary.pk).exists()


# --- Summaries ---


def test_summaries_list_shows_only_mine(user: Any, other_user: Any, user_client: Client) -> None:
    mine = _summary(user, "Trip", "I planned a trip to Sintra.")
    _summary(other_user, "Fjords", "I asked about fjords.")

    response = user_client.get("/api/summaries/")

    assert response.status_code == 200
    assert [(s["id"], s["content"]) for s in response.json()["results"]] == [
        (mine.pk, "I planned a trip to Sintra.")
    ]
    assert response.json()["results"][0]["conversation_title"] == "Trip"


def test_deleting_a_summary_is_204_and_it_is_gone(user: Any, user_client: Client) -> None:
    summary = _summary(user, "Trip", "I planned a trip to Sintra.")

    response = user_client.delete(f"/api/summaries/{summary.pk}/")

    assert response.status_code == 204
    assert not ConversationSummary.objects.filter(pk=summary.pk).exists()
    assert user_client.get("/api/summaries/").json()["results"] == []
    assert user_client.delete(f"/api/summaries/{summary.pk}/").status_code == 404


# --- Settings ---


def _propose_lisbon(request: dict[str, Any]) -> str | dict[str, Any]:
    schema = (request.get("response_format") or {}).get("schema") or {}
    if "facts" in schema.get("properties", {}):
        return {"facts": [{"kind": "profile", "content": "I live in Lisbon"}]}
    return "Noted."


def _said(user: Any, conversation: Conversation, text: str) -> Message:
    return Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.USER, content=text
    )


def test_settings_turning_memory_off_is_stored_and_the_next_extraction_is_skipped(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = _propose_lisbon
    assert user_client.get("/api/settings/").json() == {
        "memory_enabled": True, "ask_before_remembering": False,
    }  # fmt: skip

    response = user_client.put("/api/settings/", {"memory_enabled": False}, content_type=JSON)

    assert response.status_code == 200
    assert response.json() == {"memory_enabled": False, "ask_before_remembering": False}
    user.refresh_from_db()
    assert user.memory_enabled is False
    assert user_client.get("/api/settings/").json()["memory_enabled"] is False
    conversation = chat_services.start_conversation(user=user)
    paused = _said(user, conversation, "I live in Lisbon.")
    chat_services.learn_from_message(message_id=paused.pk)
    run = ExtractionRun.objects.get(source_message_id=paused.pk)
    assert run.status == ExtractionRun.Status.SKIPPED
    assert fake_llm.chat_requests == []
    assert not Memory.objects.filter(user=user).exists()

    # Turned back on, the same kind of message is learned from.
    user_client.put("/api/settings/", {"memory_enabled": True}, content_type=JSON)
    resumed = _said(user, conversation, "I live in Lisbon.")
    chat_services.learn_from_message(message_id=resumed.pk)
    assert ExtractionRun.objects.get(source_message_id=resumed.pk).status == "done"
    assert list(Memory.objects.filter(user=user).values_list("content", flat=True)) == [
        "I live in Lisbon."
    ]


def test_settings_put_without_a_boolean_is_400(user: Any, user_client: Client) -> None:
    response = user_client.put("/api/settings/", {}, content_type=JSON)

    assert response.status_code == 400
    user.refresh_from_db()
    assert user.memory_enabled is True


# --- Export ---

OTHER_MARK = "Zanzibar7781"


def _build_history(user: Any, mark: str = "") -> dict[str, Any]:
    """Conversations with messages, memories with history, summaries and extraction runs."""
    first = chat_services.start_conversation(user=user, title=f"Lisbon plans {mark}")
    hidden = chat_services.start_conversation(user=user, title=f"Incognito {mark}", incognito=True)
    said = _said(user, first, f"I live in Lisbon and I love hiking. {mark}")
    lisbon = _remember(
        user,
        f"I live in Lisbon {mark}",
        Memory.Kind.PROFILE,
        actor=MemoryEvent.Actor.EXTRACTOR,
        source_message_id=said.pk,
        source_conversation_id=first.pk,
        source_excerpt=said.content,
    )
    hiking = _remember(user, f"I love hiking {mark}", Memory.Kind.PREFERENCE)
    services.set_pinned(user=user, memory_id=lisbon.pk, pinned=True)
    services.update_memory(user=user, memory_id=hiking.pk, content=f"I love long hikes {mark}")
    expired = _remember(user, f"I am packing for Madeira {mark}", Memory.Kind.TASK)
    Memory.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=2))
    deleted = _remember(user, f"I have a cat {mark}")
    services.forget(user=user, memory_id=deleted.pk)
    reply = Message.objects.create(
        user=user, conversation=first, role=Message.Role.ASSISTANT, content=f"Olá! {mark}"
    )
    reply.memories_used.set([lisbon, hiking])
    _said(user, first, f"Any trails near me? {mark}")
    Message.objects.create(
        user=user,
        conversation=first,
        role=Message.Role.ASSISTANT,
        content="",
        status=Message.Status.FAILED,
        error="The model is busy.",
    )
    _said(user, hidden, f"Nothing to remember here. {mark}")
    services.save_summary(
        user=user,
        conversation_id=first.pk,
        conversation_title=first.title,
        content=f"I talked about living in Lisbon and hiking. {mark}",
        last_message_id=reply.pk,
        message_count=3,
    )
    rex, _ = entities.upsert_entity(
        user=user,
        name=f"Rex {mark}".strip(),
        type=Entity.Type.PET,
        attributes={"breed": f"beagle {mark}".strip()},
        source_message_id=said.pk,
    )
    rex.memories.add(lisbon)
    sarah, _ = entities.upsert_entity(user=user, name=f"Sarah {mark}".strip(), type="person")
    entities.delete_entity(user=user, entity_id=sarah.pk)
    ExtractionRun.objects.create(
        user=user, source_message_id=said.pk, status=ExtractionRun.Status.DONE, added=1
    )
    ExtractionRun.objects.create(
        user=user, source_message_id=said.pk + 100_000, status=ExtractionRun.Status.SKIPPED
    )
    return {"deleted": deleted, "lisbon": lisbon, "reply": reply, "sarah": sarah}


def test_export_contains_exactly_every_row_mnemo_holds_about_me(
    user: Any, other_user: Any, user_client: Client
) -> None:
    built = _build_history(user)
    _build_history(other_user, OTHER_MARK)

    response = user_client.get("/api/export/")

    assert response.status_code == 200
    data = response.json()
    assert data["format"] == "mnemo-export"
    assert data["profile"]["email"] == user.email
    conversations = data["conversations"]
    messages = [m for c in conversations for m in c["messages"]]
    history = [e for m in data["memories"] for e in m["history"]]
    history += [e for f in data["forgotten_memory_history"] for e in f["history"]]
    used_links = Message.memories_used.through.objects.filter(message__user=user)
    assert len(conversations) == Conversation.objects.filter(user=user).count() == 2
    assert len(messages) == Message.objects.filter(user=user).count() == 5
    assert sum(len(m["memories_used"]) for m in messages) == used_links.count() == 2
    assert len(data["memories"]) == Memory.objects.filter(user=user).count() == 3
    assert len(history) == MemoryEvent.objects.filter(user=user).count() == 7
    assert len(data["summaries"]) == ConversationSummary.objects.filter(user=user).count() == 1
    assert len(data["extraction_runs"]) == ExtractionRun.objects.filter(user=user).count() == 2
    entity_history = [e for x in data["entities"] for e in x["history"]]
    entity_history += [e for f in data["forgotten_entity_history"] for e in f["history"]]
    entity_links = Entity.memories.through.objects.filter(entity__user=user)
    assert len(data["entities"]) == Entity.objects.filter(user=user).count() == 1
    assert len(entity_history) == EntityEvent.objects.filter(user=user).count() == 4
    assert sum(len(e["memory_ids"]) for e in data["entities"]) == entity_links.count() == 1
    assert [f["entity_id"] for f in data["forgotten_entity_history"]] == [built["sarah"].pk]
    # Each row is the right one, with its provenance and history.
    assert {m["id"] for m in messages} == set(
        Message.objects.filter(user=user).values_list("pk", flat=True)
    )
    lisbon = next(m for m in data["memories"] if m["id"] == built["lisbon"].pk)
    assert lisbon["pinned"] is True
    assert lisbon["source"]["message_id"] == built["lisbon"].source_message_id
    assert [e["action"] for e in lisbon["history"]] == ["added", "pinned"]
    reply = next(m for m in messages if m["id"] == built["reply"].pk)
    assert reply["memories_used"] == sorted(m.pk for m in built["reply"].memories_used.all())
    [forgotten] = data["forgotten_memory_history"]
    assert forgotten["memory_id"] == built["deleted"].pk
    assert [e["action"] for e in forgotten["history"]] == ["added", "deleted"]


def test_export_holds_nothing_of_another_user(
    user: Any, other_user: Any, user_client: Client
) -> None:
    _build_history(user)
    other_user.email = "zanzibar7781@example.org"
    other_user.display_name = f"Other {OTHER_MARK}"
    other_user.save()
    _build_history(other_user, OTHER_MARK)

    text = user_client.get("/api/export/").content.decode()

    assert OTHER_MARK.lower() not in text.lower()
    data = json.loads(text)
    their_memories = set(Memory.objects.filter(user=other_user).values_list("pk", flat=True))
    their_conversations = set(
        Conversation.objects.filter(user=other_user).values_list("pk", flat=True)
    )
    assert not their_memories & {m["id"] for m in data["memories"]}
    assert not their_conversations & {c["id"] for c in data["conversations"]}
    assert not their_conversations & {s["conversation_id"] for s in data["summaries"]}


def test_the_pages_json_download_matches_the_api_export(user: Any, user_client: Client) -> None:
    _build_history(user)

    download = user_client.get("/memory/export")
    api = user_client.get("/api/export/")

    assert download.status_code == 200
    assert download["Content-Type"].startswith("application/json")
    assert download["Content-Disposition"].startswith("attachment;")
    assert ".json" in download["Content-Disposition"]
    downloaded = json.loads(download.content)
    exported = api.json()
    assert downloaded.pop("exported_at") and exported.pop("exported_at")
    assert downloaded == exported
    assert downloaded["memories"]


# --- Isolation and authentication ---


def test_every_endpoint_answers_404_for_another_users_ids_and_changes_nothing(
    user: Any, other_user: Any, user_client: Client
) -> None:
    theirs = _remember(other_user, "I live in Oslo", Memory.Kind.PROFILE)
    their_deleted = _remember(other_user, "I have a cat")
    services.forget(user=other_user, memory_id=their_deleted.pk)
    their_summary = _summary(other_user, "Fjords", "I asked about fjords.")
    their_entity, _ = entities.upsert_entity(
        user=other_user, name="Oslo Fjord", type="place", attributes={"near": "home"}
    )
    events_before = MemoryEvent.objects.filter(user=other_user).count()

    answers = {
        "get": user_client.get(_memory_url(theirs.pk)),
        "patch content": _patch(user_client, theirs.pk, {"content": "I live in Rome"}),
        "patch kind": _patch(user_client, theirs.pk, {"kind": "fact"}),
        "patch pinned": _patch(user_client, theirs.pk, {"pinned": True}),
        "delete": user_client.delete(_memory_url(theirs.pk)),
        "history": user_client.get(_memory_url(theirs.pk, "history/")),
        "deleted history": user_client.get(_memory_url(their_deleted.pk, "history/")),
        "summary delete": user_client.delete(f"/api/summaries/{their_summary.pk}/"),
        "entity patch": user_client.patch(
            f"/api/entities/{their_entity.pk}/", {"attributes": {}}, content_type=JSON
        ),
        "entity delete": user_client.delete(f"/api/entities/{their_entity.pk}/"),
    }

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    for response in answers.values():
        assert "Oslo" not in response.content.decode()
    theirs.refresh_from_db()
    assert (theirs.content, theirs.kind, theirs.pinned) == ("I live in Oslo", "profile", False)
    assert MemoryEvent.objects.filter(user=other_user).count() == events_before
    assert ConversationSummary.objects.filter(pk=their_summary.pk).exists()
    their_entity.refresh_from_db()
    assert their_entity.attributes == {"near": "home"}
    assert user_client.get("/api/entities/").json()["results"] == []
    assert user_client.get(MEMORIES).json()["results"] == []
    assert user_client.get(MEMORIES, {"q": "Oslo"}).json()["results"] == []
    assert user_client.get("/api/summaries/").json()["results"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", MEMORIES),
        ("post", MEMORIES),
        ("get", "/api/memories/1/"),
        ("patch", "/api/memories/1/"),
        ("delete", "/api/memories/1/"),
        ("get", "/api/memories/1/history/"),
        ("post", "/api/memories/forget-all"),
        ("get", "/api/summaries/"),
        ("delete", "/api/summaries/1/"),
        ("get", "/api/settings/"),
        ("put", "/api/settings/"),
        ("get", "/api/export/"),
        ("get", "/api/entities/"),
        ("patch", "/api/entities/1/"),
        ("delete", "/api/entities/1/"),
    ],
)
def test_signed_out_requests_are_401(method: str, path: str) -> None:
    memory = _remember(UserFactory(), "I live in Lisbon")
    path = path.replace("/1/", f"/{memory.pk}/")

    response = getattr(Client(), method)(path, {"confirm": True}, content_type=JSON)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Memory.objects.filter(pk=memory.pk).exists()


def test_a_personal_token_sees_only_its_owners_memories(user: Any, other_user: Any) -> None:
    _remember(user, "I live in Lisbon")
    _remember(other_user, "I live in Oslo")
    _token, text = tokens.create_token(user=user, name="script")

    response = Client().get(MEMORIES, HTTP_AUTHORIZATION=f"Bearer {text}")

    assert response.status_code == 200
    assert _contents(response) == ["I live in Lisbon"]


def test_http_basic_is_not_accepted(user: Any) -> None:
    # Basic would take the password on every request, outside the login throttling.
    basic = base64.b64encode(f"{user.email}:{PASSWORD}".encode()).decode()

    response = Client().get(MEMORIES, HTTP_AUTHORIZATION=f"Basic {basic}")

    assert response.status_code == 401
