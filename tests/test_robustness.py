"""Bad input and faults: every request that once was a 500 now gets a clear 4xx, nothing lost."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from chat import services as chat_services
from chat.models import Conversation, Message
from memory import entities, services
from memory.models import Entity, Memory
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

JSON = "application/json"
NUL = "before\x00after"
SURROGATE = "before\ud800after"


@pytest.fixture
def client_500(user: Any) -> Client:
    """A signed-in client that returns 500 responses instead of raising, to count them."""
    client = Client(raise_request_exception=False)
    assert client.login(email=user.email, password=PASSWORD)
    return client


def _refused(response: Any, *statuses: int) -> None:
    assert response.status_code in (statuses or (400,)), (
        response.status_code,
        response.content[:300],
    )
    body = response.content.decode(errors="replace")
    assert body.strip(), "a refusal says why"


# --- The eleven requests that were 500s ---


def test_a_nul_byte_in_a_sent_message_is_400_and_nothing_is_saved(
    user: Any, client_500: Client
) -> None:
    conversation = chat_services.start_conversation(user=user)
    response = client_500.post(f"/chat/c/{conversation.pk}/send", {"content": NUL})
    _refused(response)
    assert not Message.objects.filter(conversation=conversation).exists()


def test_a_nul_byte_in_a_new_memory_from_the_page_is_400(user: Any, client_500: Client) -> None:
    _refused(client_500.post("/memory/add", {"content": NUL, "kind": "fact"}))
    assert not Memory.objects.filter(user=user).exists()


def test_a_nul_byte_in_a_memory_edit_is_400_and_the_memory_is_unchanged(
    user: Any, client_500: Client
) -> None:
    memory = services.remember(user=user, content="I live in Lisbon", kind="fact")
    _refused(client_500.post(f"/memory/{memory.pk}/edit", {"content": NUL}))
    memory.refresh_from_db()
    assert memory.content == "I live in Lisbon"


def test_a_nul_byte_in_an_entity_edit_is_400_and_the_entity_is_unchanged(
    user: Any, client_500: Client
) -> None:
    entity, _ = entities.upsert_entity(user=user, name="Sarah", attributes={"job": "vet"})
    response = client_500.post(
        f"/memory/entities/{entity.pk}/edit", {"name": "Sarah", "attributes": f"job: {NUL}"}
    )
    _refused(response)
    entity.refresh_from_db()
    assert entity.attributes == {"job": "vet"}


def test_a_nul_byte_in_a_conversation_title_is_400(user: Any, client_500: Client) -> None:
    conversation = chat_services.start_conversation(user=user, title="Trip")
    _refused(client_500.post(f"/chat/c/{conversation.pk}/rename", {"title": NUL}))
    conversation.refresh_from_db()
    assert conversation.title == "Trip"


@pytest.mark.parametrize("url", ["/memory/?q=%00", "/api/memories/?q=%00"])
def test_a_nul_byte_in_a_search_query_is_400(client_500: Client, url: str) -> None:
    _refused(client_500.get(url))


def test_a_malformed_attempt_number_is_400(client_500: Client) -> None:
    _refused(client_500.get("/memory/learned?message=1&attempt=abc"))


def test_renaming_an_entity_to_another_entitys_name_is_409_naming_it(
    user: Any, client_500: Client
) -> None:
    entities.upsert_entity(user=user, name="Sarah")
    tom, _ = entities.upsert_entity(user=user, name="Tom", attributes={"job": "chef"})
    response = client_500.patch(
        f"/api/entities/{tom.pk}/",
        json.dumps({"name": "sarah", "attributes": {"job": "chef"}}),
        content_type=JSON,
    )
    _refused(response, 409)
    assert "Sarah" in response.json()["detail"]
    page = client_500.post(
        f"/memory/entities/{tom.pk}/edit", {"name": "Sarah", "attributes": "job: chef"}
    )
    _refused(page, 409)
    assert "Sarah" in page.content.decode()
    assert Entity.objects.get(pk=tom.pk).name == "Tom"


def test_a_json_body_nested_50000_deep_is_400(user: Any, client_500: Client) -> None:
    body = '{"content": ' + "[" * 50_000 + "]" * 50_000 + "}"
    _refused(client_500.post("/api/memories/", body, content_type=JSON))
    assert not Memory.objects.filter(user=user).exists()


# --- More bad input at the edges ---


@pytest.mark.parametrize("text", ["bad\u0000json", "bad\ud800json"])
def test_a_nul_byte_or_lone_surrogate_in_a_json_field_is_400(
    user: Any, client_500: Client, text: str
) -> None:
    body = json.dumps({"content": text})  # escaped as \u0000 / \ud800, as a client would
    _refused(client_500.post("/api/memories/", body, content_type=JSON))
    conversation = chat_services.start_conversation(user=user)
    _refused(
        client_500.post(f"/api/conversations/{conversation.pk}/messages/", body, content_type=JSON)
    )
    assert not Memory.objects.filter(user=user).exists()
    assert not Message.objects.filter(conversation=conversation).exists()


def test_a_body_over_the_upload_limit_is_413(user: Any, client_500: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"content": "x" * 20_000})
    _refused(client_500.post("/api/memories/", body, content_type=JSON), 413)


def test_invalid_json_is_400(client_500: Client) -> None:
    _refused(client_500.post("/api/memories/", "{not json", content_type=JSON))


def test_a_conversation_id_that_is_not_mine_stays_404(client_500: Client) -> None:
    assert client_500.get("/chat/c/999999/").status_code == 404
    assert Conversation.objects.count() == 0
