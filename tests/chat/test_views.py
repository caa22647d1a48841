from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import Conversation, Message
from tests.conftest import AsgiServer
from tests.factories import PASSWORD, UserFactory
from tests.fake_llm import FakeLLM


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.split("\n\n"):
        lines = block.strip().splitlines()
        event = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "".join(line[6:] for line in lines if line.startswith("data: "))
        if event and data:
            events.append((event, json.loads(data)))
    return events


@pytest.mark.django_db
def test_the_chat_page_lists_only_my_conversations(user_client: Client, user: Any) -> None:
    mine = services.start_conversation(user=user, title="Trip to Lisbon")
    services.start_conversation(user=UserFactory(), title="Someone else's secret")
    response = user_client.get(reverse("chat:conversation", args=[mine.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Trip to Lisbon" in html
    assert "secret" not in html


@pytest.mark.django_db
def test_another_users_conversation_is_404(user_client: Client) -> None:
    theirs = services.start_conversation(user=UserFactory())
    for name in ("chat:conversation",):
        assert user_client.get(reverse(name, args=[theirs.pk])).status_code == 404
    for name in ("chat:send", "chat:rename", "chat:delete"):
        response = user_client.post(
            reverse(name, args=[theirs.pk]), {"content": "hi", "title": "x"}
        )
        assert response.status_code == 404, name
    assert Conversation.objects.filter(pk=theirs.pk).exists()
    assert not Message.objects.filter(conversation=theirs).exists()


@pytest.mark.django_db
def test_new_conversation_can_be_incognito(user_client: Client, user: Any) -> None:
    response = user_client.post(reverse("chat:new"), {"incognito": "on"})
    conversation = Conversation.objects.get(user=user)
    assert response["Location"] == reverse("chat:conversation", args=[conversation.pk])
    assert conversation.incognito is True
    page = user_client.get(response["Location"]).content.decode()
    assert "Incognito" in page


@pytest.mark.django_db
def test_sending_returns_the_turn_with_a_pending_reply(user_client: Client, user: Any) -> None:
    conversation = services.start_conversation(user=user)
    response = user_client.post(
        reverse("chat:send", args=[conversation.pk]),
        {"content": "Hello **there**"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.status == Message.Status.PENDING
    assert f'data-stream-url="{reverse("chat:stream", args=[reply.pk])}"' in html
    assert "Hello **there**" in html  # the person's text is shown as typed, escaped


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "status", "text"),
    [("   ", 400, "Type a message first"), ("x" * 9000, 413, "limit is 8,000")],
)
def test_bad_messages_get_a_clear_error_in_the_composer(
    user_client: Client, user: Any, content: str, status: int, text: str
) -> None:
    conversation = services.start_conversation(user=user)
    response = user_client.post(
        reverse("chat:send", args=[conversation.pk]),
        {"content": content},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == status
    assert text in response.content.decode()
    assert response["HX-Retarget"] == "#composer-error"
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_rate_limit_shows_a_message(user_client: Client, user: Any, settings: Any) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    conversation = services.start_conversation(user=user)
    url = reverse("chat:send", args=[conversation.pk])
    assert user_client.post(url, {"content": "one"}).status_code == 200
    response = user_client.post(url, {"content": "two"})
    assert response.status_code == 429
    assert "too quickly" in response.content.decode()


@pytest.mark.django_db
def test_rename_and_delete(user_client: Client, user: Any) -> None:
    conversation = services.start_conversation(user=user)
    response = user_client.post(reverse("chat:rename", args=[conversation.pk]), {"title": "Plans"})
    assert "Plans" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Plans"
    user_client.post(reverse("chat:delete", args=[conversation.pk]))
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.mark.django_db
def test_a_refused_rename_answers_in_the_rename_forms_error_slot(
    user_client: Client, user: Any
) -> None:
    conversation = services.start_conversation(user=user, title="Plans")
    response = user_client.post(
        reverse("chat:rename", args=[conversation.pk]),
        {"title": "   "},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert response.content.decode() == "A title cannot be empty."
    assert response["HX-Retarget"] == "#rename-error"
    assert response["HX-Reswap"] == "innerHTML"
    conversation.refresh_from_db()
    assert conversation.title == "Plans"


@pytest.mark.django_db
def test_replies_render_markdown_sanitized(user_client: Client, user: Any) -> None:
    conversation = services.start_conversation(user=user)
    Message.objects.create(
        user=user,
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="**bold**\n\n```python\nprint(1)\n```\n\n<script>alert(1)</script>"
        "\n\n![x](http://tracker.example/p.png)",
    )
    html = user_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "<strong>bold</strong>" in html
    assert '<code class="language-python">print(1)' in html
    assert "<script>alert(1)</script>" not in html
    assert "tracker.example" not in html  # no images: a reply never makes the browser fetch


def _login(server: AsgiServer, email: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=10)
    client.get("/accounts/login/")
    client.post(
        "/accounts/login/",
        data={
            "login": email,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert "sessionid" in client.cookies
    return client


def test_reply_streams_over_sse_from_the_asgi_server(
    asgi_server: AsgiServer, fake_llm: FakeLLM, user: Any
) -> None:
    fake_llm.reply("Hi there, friend!", tokens=["Hi", " there", ",", " friend", "!"])
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hello")
    client = _login(asgi_server, user.email)
    csrf = client.cookies["csrftoken"]
    with client.stream(
        "POST", f"/chat/m/{reply.pk}/stream", headers={"X-CSRFToken": csrf}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    events = parse_sse(body)
    assert [data["text"] for kind, data in events if kind == "token"] == [
        "Hi",
        " there",
        ",",
        " friend",
        "!",
    ]
    kind, done = events[-1]
    assert kind == "done" and done["status"] == "complete"
    assert "Hi there, friend!" in done["html"]
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE and reply.content == "Hi there, friend!"
    # The prompt the model saw: system first, then the person's message.
    prompt = fake_llm.chat_requests[-1]["messages"]
    assert prompt[0]["role"] == "system" and prompt[-1] == {"role": "user", "content": "Hello"}
    assert fake_llm.chat_requests[-1]["max_tokens"] > 0


@pytest.mark.django_db
def test_the_stream_check_starts_embedding_only_the_users_own_pending_message(
    user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import RequestFactory

    from chat import views

    monkeypatch.setattr(services, "_early", {})
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hello")
    other = UserFactory()
    theirs = services.start_conversation(user=other)
    _, their_reply = services.send_message(user=other, conversation_id=theirs.pk, content="Mine")
    client = Client()
    client.force_login(user)
    request = RequestFactory().post(f"/chat/m/{reply.pk}/stream")
    request.session = client.session

    assert views._stream_check(request, their_reply.pk) == (user, None)
    assert services._early == {}
    assert views._stream_check(request, reply.pk) == (user, Message.Status.PENDING)
    assert list(services._early) == [(user.pk, "Hello")]
    services._message_embedding(user.pk, "Hello")
    assert services._early == {}


def test_stream_refuses_another_users_message(asgi_server: AsgiServer, user: Any) -> None:
    other = UserFactory()
    conversation = services.start_conversation(user=other)
    _, reply = services.send_message(user=other, conversation_id=conversation.pk, content="Mine")
    client = _login(asgi_server, user.email)
    response = client.post(
        f"/chat/m/{reply.pk}/stream", headers={"X-CSRFToken": client.cookies["csrftoken"]}
    )
    assert response.status_code == 404
    reply.refresh_from_db()
    assert reply.status == Message.Status.PENDING


def test_a_client_that_disconnects_mid_stream_closes_the_llm_stream_and_keeps_the_partial_reply(
    asgi_server: AsgiServer, fake_llm: FakeLLM, user: Any
) -> None:
    tokens = [f"word{i} " for i in range(60)]
    fake_llm.reply("".join(tokens), tokens=tokens, delay=0.05)
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Talk")
    client = _login(asgi_server, user.email)
    received = ""
    with client.stream(
        "POST", f"/chat/m/{reply.pk}/stream", headers={"X-CSRFToken": client.cookies["csrftoken"]}
    ) as response:
        for chunk in response.iter_text():
            received += chunk
            if received.count("event: token") >= 3:
                break  # leaving the block closes the connection mid-stream
    client.close()

    assert fake_llm.wait_for_disconnects(1, timeout=10), "the upstream LLM stream stayed open"
    for _ in range(100):
        reply.refresh_from_db()
        if reply.status != Message.Status.STREAMING:
            break
        import time

        time.sleep(0.05)
    assert reply.status == Message.Status.STOPPED
    assert reply.content.startswith("word0 word1 word2 ")
    assert len(reply.content) < len("".join(tokens))


def test_disconnecting_streams_leak_no_database_connections(
    asgi_server: AsgiServer, fake_llm: FakeLLM, user: Any, settings: Any
) -> None:
    from django.db import connection

    def backends() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            return int(cursor.fetchone()[0])

    client = _login(asgi_server, user.email)
    conversation = services.start_conversation(user=user)
    for _ in range(6):
        tokens = [f"t{i} " for i in range(40)]
        fake_llm.reply("".join(tokens), tokens=tokens, delay=0.03)
        _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="go")
        with client.stream(
            "POST",
            f"/chat/m/{reply.pk}/stream",
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        ) as response:
            for chunk in response.iter_text():
                if "event: token" in chunk:
                    break
    client.close()
    # Every request ran on its own threads; with per-thread connections these would pile up.
    assert backends() <= settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] + 1


@pytest.mark.django_db
def test_a_signed_out_background_refresh_gets_401_not_the_sign_in_page(client: Client) -> None:
    # The sidebar polls the conversation list; after the session ends, htmx would follow a
    # redirect and swap the sign-in form into the sidebar.
    response = client.get(reverse("chat:list"), headers={"HX-Request": "true"})

    assert response.status_code == 401
    assert response["Content-Type"].startswith("text/plain")
    assert "signed out" in response.content.decode()
    assert "what you typed is still here" in response.content.decode()


@pytest.mark.django_db
def test_a_signed_out_page_load_still_redirects_to_sign_in(client: Client) -> None:
    response = client.get(reverse("chat:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_a_signed_out_background_refresh_gets_401_under_asgi(asgi_server: AsgiServer) -> None:
    # The same through uvicorn, where the middleware runs in the event loop.
    with httpx.Client(base_url=asgi_server.url, timeout=10) as client:
        refresh = client.get("/chat/list", headers={"HX-Request": "true"})
        page = client.get("/chat/list")

    assert refresh.status_code == 401
    assert "signed out" in refresh.text
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_a_reply_being_written_elsewhere_is_watched_not_streamed_again(
    user_client: Client, user: Any
) -> None:
    # The tab was reloaded mid-stream: the reply is STREAMING for the old connection. The page
    # must not start it again, and must not show "typing" forever: it polls the reply.
    conversation = services.start_conversation(user=user)
    Message.objects.create(user=user, conversation=conversation, role="user", content="Hi")
    reply = Message.objects.create(
        user=user, conversation=conversation, role="assistant", status="streaming"
    )

    html = user_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()

    assert f'data-watch-url="{reverse("chat:message", args=[reply.pk])}"' in html
    assert f'data-stop-url="{reverse("chat:stop", args=[reply.pk])}"' in html
    assert "data-stream-url" not in html


@pytest.mark.django_db
def test_one_reply_as_it_stands_is_only_the_owners(user_client: Client, user: Any) -> None:
    conversation = services.start_conversation(user=user)
    asked = Message.objects.create(user=user, conversation=conversation, role="user", content="Hi")
    reply = Message.objects.create(
        user=user,
        conversation=conversation,
        role="assistant",
        status="stopped",
        content="Half a **reply**",
    )
    other: Any = UserFactory()
    theirs = Message.objects.create(
        user=other,
        conversation=services.start_conversation(user=other),
        role="assistant",
        content="Someone else's reply",
    )

    response = user_client.get(reverse("chat:message", args=[reply.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="message-{reply.pk}"' in html
    assert "status-stopped" in html
    assert "<strong>reply</strong>" in html
    assert "Regenerate" in html
    assert user_client.get(reverse("chat:message", args=[theirs.pk])).status_code == 404
    assert user_client.get(reverse("chat:message", args=[asked.pk])).status_code == 404
    assert user_client.post(reverse("chat:message", args=[reply.pk])).status_code == 405
