"""The chat JSON API under /api/: conversations, messages, the SSE stream, errors, docs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from chat import services
from chat.models import Conversation, Message
from tests.factories import PASSWORD, UserFactory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

JSON = "application/json"


def _conversation(user: Any, title: str = "") -> Conversation:
    return services.start_conversation(user=user, title=title)


def _url(conversation_id: int | None = None, suffix: str = "") -> str:
    if conversation_id is None:
        return "/api/conversations/"
    return f"/api/conversations/{conversation_id}/{suffix}"


def _read_stream(response: Any) -> str:
    """The whole body of a streamed response whose iterator is async (an async view's SSE)."""

    async def collect() -> bytes:
        content: AsyncIterator[bytes] = response.streaming_content
        return b"".join([chunk async for chunk in content])

    return async_to_sync(collect)().decode()


def _sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def _away_from_a_minute_boundary() -> None:
    # The per-minute limit counts in fixed wall-clock minutes.
    if 60 - time.time() % 60 < 2:
        time.sleep(2.5)


# --- Conversations ---


def test_list_conversations_returns_only_mine_newest_first(
    user: Any, other_user: Any, user_client: Client
) -> None:
    older = _conversation(user, "Older")
    newer = _conversation(user, "Newer")
    _conversation(other_user, "Theirs")
    services.send_message(user=user, conversation_id=newer.pk, content="bump")

    response = user_client.get(_url())

    assert response.status_code == 200
    assert [c["id"] for c in response.json()["results"]] == [newer.pk, older.pk]
    assert response.json()["results"][0]["title"] == "Newer"


def test_create_conversation_returns_201_with_the_conversation(
    user: Any, user_client: Client
) -> None:
    response = user_client.post(_url(), {"title": "Ideas", "incognito": True}, content_type=JSON)

    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Ideas"
    assert body["incognito"] is True
    conversation = Conversation.objects.get(pk=body["id"])
    assert conversation.user == user
    assert conversation.incognito is True


def test_create_conversation_without_a_body_starts_an_untitled_one(
    user: Any, user_client: Client
) -> None:
    response = user_client.post(_url(), {}, content_type=JSON)

    assert response.status_code == 201
    assert response.json()["title"] == ""
    assert response.json()["incognito"] is False
    assert Conversation.objects.filter(user=user).count() == 1


def test_get_conversation_returns_it(user: Any, user_client: Client) -> None:
    conversation = _conversation(user, "Recipes")

    response = user_client.get(_url(conversation.pk))

    assert response.status_code == 200
    assert response.json()["id"] == conversation.pk
    assert response.json()["title"] == "Recipes"


def test_rename_conversation_saves_the_new_title(user: Any, user_client: Client) -> None:
    conversation = _conversation(user, "Old")

    response = user_client.patch(
        _url(conversation.pk), {"title": "  New   name "}, content_type=JSON
    )

    assert response.status_code == 200
    assert response.json()["title"] == "New name"
    conversation.refresh_from_db()
    assert conversation.title == "New name"


def test_rename_conversation_to_a_blank_title_is_a_400(user: Any, user_client: Client) -> None:
    conversation = _conversation(user, "Old")

    response = user_client.patch(_url(conversation.pk), {"title": "   "}, content_type=JSON)

    assert response.status_code == 400
    conversation.refresh_from_db()
    assert conversation.title == "Old"


def test_delete_conversation_removes_it_and_its_messages(user: Any, user_client: Client) -> None:
    conversation = _conversation(user)
    services.send_message(user=user, conversation_id=conversation.pk, content="Hi")

    response = user_client.delete(_url(conversation.pk))

    assert response.status_code == 204
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


# --- Messages ---


def test_list_messages_returns_the_conversation_in_order(user: Any, user_client: Client) -> None:
    conversation = _conversation(user)
    message, reply = services.send_message(
        user=user, conversation_id=conversation.pk, content="Hello"
    )
    services.send_message(user=user, conversation_id=_conversation(user).pk, content="Other")

    response = user_client.get(_url(conversation.pk, "messages/"))

    assert response.status_code == 200
    body = response.json()["results"]
    assert [m["id"] for m in body] == [message.pk, reply.pk]
    assert body[0]["role"] == "user"
    assert body[0]["content"] == "Hello"
    assert body[1]["role"] == "assistant"
    assert body[1]["status"] == "pending"


def test_posting_a_message_returns_201_with_the_message_and_the_complete_reply(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    conversation = _conversation(user)
    fake_llm.reply("Lima is the capital of Peru.")

    response = user_client.post(
        _url(conversation.pk, "messages/"),
        {"content": "What is the capital of Peru?"},
        content_type=JSON,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["message"]["role"] == "user"
    assert body["message"]["content"] == "What is the capital of Peru?"
    assert body["reply"]["role"] == "assistant"
    assert body["reply"]["status"] == "complete"
    assert body["reply"]["content"] == "Lima is the capital of Peru."
    reply = Message.objects.get(pk=body["reply"]["id"])
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Lima is the capital of Peru."


def test_posting_a_message_when_the_llm_fails_is_a_502_and_keeps_the_message(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    conversation = _conversation(user)
    fake_llm.fail(500)

    response = user_client.post(
        _url(conversation.pk, "messages/"), {"content": "Are you there?"}, content_type=JSON
    )

    assert response.status_code == 502
    body = response.json()
    assert body["reply"]["status"] == "failed"
    assert body["reply"]["error"]
    assert Message.objects.filter(
        pk=body["message"]["id"], role=Message.Role.USER, content="Are you there?"
    ).exists()
    assert Message.objects.get(pk=body["reply"]["id"]).status == Message.Status.FAILED


def test_the_stream_endpoint_sends_tokens_in_order_then_done(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    conversation = _conversation(user)
    pieces = ["Lima ", "is ", "the ", "capital."]
    fake_llm.reply("".join(pieces), tokens=pieces)

    response = user_client.post(
        _url(conversation.pk, "messages/stream"), {"content": "Capital?"}, content_type=JSON
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    events = _sse_events(_read_stream(response))
    assert [data["text"] for kind, data in events if kind == "token"] == pieces
    kind, done = events[-1]
    assert kind == "done"
    assert done["status"] == "complete"
    assert done["content"] == "Lima is the capital."
    assert "html" not in done
    reply = Message.objects.get(pk=done["id"])
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Lima is the capital."


def test_the_stream_endpoint_ends_with_a_failed_done_event_when_the_llm_fails(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    conversation = _conversation(user)
    fake_llm.fail(500)

    response = user_client.post(
        _url(conversation.pk, "messages/stream"), {"content": "Hi"}, content_type=JSON
    )

    assert response.status_code == 200
    events = _sse_events(_read_stream(response))
    assert [kind for kind, _ in events] == ["done"]
    assert events[0][1]["status"] == "failed"
    assert events[0][1]["error"]
    assert Message.objects.filter(role=Message.Role.USER, content="Hi").exists()


# --- Errors ---


@pytest.mark.parametrize("suffix", ["messages/", "messages/stream"])
@pytest.mark.parametrize("content", ["", "   "])
def test_an_empty_message_is_a_400_with_a_detail(
    user: Any, user_client: Client, fake_llm: FakeLLM, suffix: str, content: str
) -> None:
    conversation = _conversation(user)

    response = user_client.post(
        _url(conversation.pk, suffix), {"content": content}, content_type=JSON
    )

    assert response.status_code == 400
    assert response.json()["detail"] == "Type a message first."
    assert response.json()["errors"] == {"content": ["Type a message first."]}
    assert not Message.objects.exists()
    assert fake_llm.chat_requests == []


@pytest.mark.parametrize("suffix", ["messages/", "messages/stream"])
def test_an_oversized_message_is_a_413_with_a_detail(
    user: Any, user_client: Client, settings: Any, suffix: str
) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    conversation = _conversation(user)

    response = user_client.post(
        _url(conversation.pk, suffix), {"content": "x" * 11}, content_type=JSON
    )

    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("post", None), ("patch", ""), ("post", "messages/"), ("post", "messages/stream")],
)
def test_a_malformed_json_body_is_a_400(
    user: Any, user_client: Client, method: str, suffix: str | None
) -> None:
    conversation = _conversation(user, "Kept")
    url = _url() if suffix is None else _url(conversation.pk, suffix)

    response = getattr(user_client, method)(url, data="{bad", content_type=JSON)

    assert response.status_code == 400
    assert "detail" in response.json()
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Kept"]
    assert not Message.objects.exists()


def test_a_message_without_content_is_a_400_naming_the_field(
    user: Any, user_client: Client
) -> None:
    conversation = _conversation(user)

    response = user_client.post(_url(conversation.pk, "messages/"), {}, content_type=JSON)

    assert response.status_code == 400
    assert "content" in response.json()["errors"]


# Every endpoint that takes a conversation id: method, URL suffix, JSON body.
CONVERSATION_ENDPOINTS = [
    ("get", "", None),
    ("patch", "", {"title": "Taken over"}),
    ("delete", "", None),
    ("get", "messages/", None),
    ("post", "messages/", {"content": "Injected"}),
    ("post", "messages/stream", {"content": "Injected"}),
]


def _call(client: Client, method: str, url: str, body: dict[str, str] | None) -> Any:
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, content_type=JSON)


@pytest.mark.parametrize(("method", "suffix", "body"), CONVERSATION_ENDPOINTS)
def test_an_unknown_conversation_is_a_404_on_every_endpoint(
    user: Any,
    user_client: Client,
    fake_llm: FakeLLM,
    method: str,
    suffix: str,
    body: dict[str, str] | None,
) -> None:
    _conversation(user)
    missing = (Conversation.objects.order_by("-pk").values_list("pk", flat=True)[0]) + 1000

    response = _call(user_client, method, _url(missing, suffix), body)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert not Message.objects.exists()
    assert fake_llm.chat_requests == []


@pytest.mark.parametrize(("method", "suffix", "body"), CONVERSATION_ENDPOINTS)
def test_another_users_conversation_is_a_404_on_every_endpoint_and_stays_unchanged(
    other_user: Any,
    user_client: Client,
    fake_llm: FakeLLM,
    method: str,
    suffix: str,
    body: dict[str, str] | None,
) -> None:
    theirs = _conversation(other_user, "Private")
    services.send_message(user=other_user, conversation_id=theirs.pk, content="My secret")
    before = list(Message.objects.order_by("pk").values())

    response = _call(user_client, method, _url(theirs.pk, suffix), body)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert b"My secret" not in response.content
    assert b"Private" not in response.content
    theirs.refresh_from_db()
    assert theirs.title == "Private"
    assert list(Message.objects.order_by("pk").values()) == before
    assert fake_llm.chat_requests == []


@pytest.mark.parametrize("suffix", ["messages/", "messages/stream"])
def test_sending_too_fast_is_a_429_with_a_detail(
    user: Any, user_client: Client, settings: Any, suffix: str
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    conversation = _conversation(user)
    _away_from_a_minute_boundary()
    services.send_message(user=user, conversation_id=conversation.pk, content="first")

    response = user_client.post(
        _url(conversation.pk, suffix), {"content": "second"}, content_type=JSON
    )

    assert response.status_code == 429
    assert "too quickly" in response.json()["detail"]
    assert not Message.objects.filter(content="second").exists()


def test_spending_the_daily_token_budget_is_a_429_with_a_detail(
    user: Any, user_client: Client, settings: Any
) -> None:
    settings.CHAT_DAILY_TOKEN_BUDGET = 50
    conversation = _conversation(user)
    Message.objects.create(
        user=user, conversation=conversation, role="assistant", content="x", completion_tokens=50
    )

    response = user_client.post(
        _url(conversation.pk, "messages/"), {"content": "more"}, content_type=JSON
    )

    assert response.status_code == 429
    assert "budget" in response.json()["detail"]


ALL_ENDPOINTS = [("get", None, None), ("post", None, {"title": "x"}), *CONVERSATION_ENDPOINTS]


@pytest.mark.parametrize(("method", "suffix", "body"), ALL_ENDPOINTS)
def test_every_endpoint_refuses_an_anonymous_caller_with_401(
    user: Any,
    fake_llm: FakeLLM,
    method: str,
    suffix: str | None,
    body: dict[str, str] | None,
) -> None:
    conversation = _conversation(user, "Mine")
    services.send_message(user=user, conversation_id=conversation.pk, content="Hello")
    before = list(Message.objects.order_by("pk").values())
    url = _url() if suffix is None else _url(conversation.pk, suffix)

    response = _call(Client(), method, url, body)

    assert response.status_code == 401
    assert "detail" in response.json()
    assert Conversation.objects.get().title == "Mine"
    assert list(Message.objects.order_by("pk").values()) == before
    assert fake_llm.chat_requests == []


# --- Schema and docs ---


def test_the_openapi_schema_documents_the_conversation_endpoints(user_client: Client) -> None:
    response = user_client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "/api/conversations/" in paths
    assert "/api/conversations/{conversation_id}/" in paths
    assert "/api/conversations/{conversation_id}/messages/" in paths
    assert "/api/conversations/{conversation_id}/messages/stream" in paths
    assert set(paths["/api/conversations/{conversation_id}/"]) >= {"get", "patch", "delete"}


class _AssetCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def test_the_api_docs_load_only_local_static_files(user_client: Client) -> None:
    response = user_client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    collector = _AssetCollector()
    collector.feed(response.content.decode())
    assert any("swagger-ui" in url and url.endswith(".js") for url in collector.urls)
    for url in collector.urls:
        assert not url.startswith(("http://", "https://", "//")), url
        assert url.startswith("/"), url
    for url in collector.urls:
        asset = user_client.get(url.split("?", 1)[0])
        assert asset.status_code == 200, url


def test_a_second_signed_in_person_sees_only_their_own_data(user: Any, user_client: Client) -> None:
    second = UserFactory()
    second_client = Client()
    assert second_client.login(email=second.email, password=PASSWORD)
    mine = _conversation(user, "Mine")

    created = second_client.post(_url(), {"title": "Theirs"}, content_type=JSON).json()

    assert [c["title"] for c in user_client.get(_url()).json()["results"]] == ["Mine"]
    assert [c["title"] for c in second_client.get(_url()).json()["results"]] == ["Theirs"]
    assert second_client.get(_url(mine.pk)).status_code == 404
    assert user_client.get(_url(created["id"])).status_code == 404


@pytest.mark.parametrize(
    "title",
    ["wifi password is Hunter2-Kestrel!", "AWS AKIAIOSFODNN7EXAMPLE", "Card 4111 1111 1111 1111"],
)
def test_a_title_holding_a_secret_is_refused_on_creation_and_rename(
    user: Any, user_client: Client, title: str
) -> None:
    conversation = _conversation(user, "Old")

    renamed = user_client.patch(_url(conversation.pk), {"title": title}, content_type=JSON)
    created = user_client.post(_url(), {"title": title}, content_type=JSON)

    assert (renamed.status_code, created.status_code) == (400, 400)
    assert "secret" in renamed.json()["detail"]
    conversation.refresh_from_db()
    assert conversation.title == "Old"
    assert list(Conversation.objects.filter(user=user).values_list("title", flat=True)) == ["Old"]
