"""Entities: people, pets and places, kept up to date and recalled when named."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from chat import services as chat_services
from chat.models import Message
from memory import extraction
from memory.models import Entity, EntityEvent, Memory
from tests.factories import UserFactory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

PROPOSALS: dict[str, dict[str, Any]] = {
    "My friend Sarah works at Google as a software engineer.": {
        "facts": [
            {"kind": "fact", "content": "My friend Sarah works at Google as a software engineer"}
        ],
        "entities": [
            {
                "name": "Sarah",
                "type": "person",
                "attributes": {
                    "relation": "friend",
                    "works at": "Google",
                    "job": "software engineer",
                },
            }
        ],
    },
    "Our dog Bruno is 3.": {
        "facts": [{"kind": "fact", "content": "Our dog Bruno is 3"}],
        "entities": [
            {"name": "Bruno", "type": "pet", "attributes": {"species": "dog", "age": "3"}},
            {"name": "Rex", "type": "pet", "attributes": {"species": "cat"}},  # invented
        ],
    },
    "Sarah just started at Microsoft.": {
        "facts": [{"kind": "fact", "content": "Sarah just started at Microsoft"}],
        "entities": [{"name": "Sarah", "type": "person", "attributes": {"works at": "Microsoft"}}],
    },
}


def responder(request: dict[str, Any]) -> Any:
    schema = (request.get("response_format") or {}).get("schema") or {}
    text = request["messages"][-1]["content"]
    if "facts" in schema.get("properties", {}):
        return PROPOSALS.get(text, {"facts": [], "entities": []})
    if "decisions" in schema.get("properties", {}):
        return {"decisions": [{"statement": 1, "action": "add", "memory_id": None}]}
    return "Noted."


def learn(user: Any, text: str, message_id: int) -> None:
    extraction.extract(user=user, text=text, source_message_id=message_id)


def ask(user: Any, text: str) -> Message:
    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(user=user, conversation_id=conversation.pk, content=text)

    async def run() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(run)()
    reply.refresh_from_db()
    return reply


def test_entities_are_kept_updated_and_recalled_when_named(user: Any, fake_llm: FakeLLM) -> None:
    fake_llm.responder = responder
    for number, text in enumerate(PROPOSALS, start=1):
        learn(user, text, number)

    sarah = Entity.objects.get(user=user, key="sarah")
    assert sarah.type == "person"
    assert sarah.attributes == {
        "relation": "friend", "works at": "Microsoft", "job": "software engineer"
    }  # fmt: skip
    history = list(
        EntityEvent.objects.filter(entity_ref=sarah.pk, attribute="works at")
        .order_by("created_at", "id")
        .values_list("old_value", "new_value")
    )
    assert history == [("", "Google"), ("Google", "Microsoft")]
    assert sarah.memories.filter(content__icontains="Google").exists()
    bruno = Entity.objects.get(user=user, key="bruno")
    assert bruno.attributes == {"species": "dog", "age": "3"}
    assert not Entity.objects.filter(user=user, key="rex").exists()  # not in the message

    fake_llm.reply("Maybe a book about cloud computing?")
    reply = ask(user, "What should I get Sarah for her birthday?")
    system = [r for r in fake_llm.chat_requests if r.get("stream")][-1]["messages"][0]["content"]
    assert "Sarah (person)" in system and "works at: Microsoft" in system
    assert "works at: Google" not in system
    included = [i for i in reply.recall["items"] if i["source"] == "entity" and i["included"]]
    assert [i["id"] for i in included] == [sarah.pk]


def test_another_users_entities_are_never_recalled(user: Any, fake_llm: FakeLLM) -> None:
    other: Any = UserFactory()
    Entity.objects.create(user=other, name="Sarah", key="sarah", type="person",
                          attributes={"works at": "Secret Corp"})  # fmt: skip
    fake_llm.reply("Hmm.")
    ask(user, "What should I get Sarah for her birthday?")
    system = fake_llm.chat_requests[-1]["messages"][0]["content"]
    assert "Secret Corp" not in system


def test_the_memory_page_shows_edits_and_deletes_entities(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = responder
    learn(user, "Our dog Bruno is 3.", 1)
    bruno = Entity.objects.get(user=user, key="bruno")
    page = user_client.get("/memory/").content.decode()
    assert "People, pets and places" in page and "Bruno" in page and "species:" in page

    response = user_client.post(
        f"/memory/entities/{bruno.pk}/edit", {"name": "Bruno", "attributes": "species: dog\nage: 4"}
    )
    assert response.status_code == 200 and "age:</span> 4" in response.content.decode()
    bruno.refresh_from_db()
    assert bruno.attributes == {"species": "dog", "age": "4"}
    assert EntityEvent.objects.filter(entity_ref=bruno.pk, actor="user", new_value="4").exists()

    stranger: Any = UserFactory()
    other = Entity.objects.create(user=stranger, name="Rex", key="rex")
    assert user_client.get(f"/memory/entities/{other.pk}/edit").status_code == 404
    user_client.post(f"/memory/entities/{other.pk}/delete")
    assert Entity.objects.filter(pk=other.pk).exists()

    user_client.post(f"/memory/entities/{bruno.pk}/delete")
    assert not Entity.objects.filter(pk=bruno.pk).exists()
    assert Memory.objects.filter(user=user, content__icontains="Bruno").exists()  # memory stays


def test_entities_are_exported_and_erased(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    from accounts.services import erase_account

    fake_llm.responder = responder
    learn(user, "My friend Sarah works at Google as a software engineer.", 1)
    exported = user_client.get("/api/export/").json()
    assert [e["name"] for e in exported["entities"]] == ["Sarah"]
    assert exported["entities"][0]["history"]
    erase_account(user=user)
    assert not Entity.objects.exists() and not EntityEvent.objects.exists()
