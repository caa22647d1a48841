"""A reply the token limit cut short is saved, shown and given by the API as cut short, and
Continue goes on from where it stopped; a reply the model finished is unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import Message
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db(transaction=True)

JSON = "application/json"
CUT = "Luna has a brother named Max. They"


def _stream(user: Any, message_id: int) -> tuple[list[str], Message | None]:
    async def collect() -> tuple[list[str], Message | None]:
        tokens: list[str] = []
        final: Message | None = None
        async for event in services.stream_reply(user=user, message_id=message_id):
            if event.kind == "token":
                tokens.append(event.text)
            elif event.kind == "done":
                final = event.message
        return tokens, final

    return async_to_sync(collect)()


def _cut_reply(user: Any, fake_llm: FakeLLM) -> Message:
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(
        user=user, conversation_id=conversation.pk, content="Tell me a story about Luna."
    )
    fake_llm.reply(CUT, finish_reason="length")
    _stream(user, reply.pk)
    reply.refresh_from_db()
    return reply


def test_a_reply_the_token_limit_ended_is_saved_as_cut_short(user: Any, fake_llm: FakeLLM) -> None:
    reply = _cut_reply(user, fake_llm)

    assert reply.status == Message.Status.COMPLETE
    assert reply.content == CUT  # the model's words, kept as they came
    assert reply.finish_reason == "length"
    assert reply.cut_short


def test_a_reply_the_model_finished_is_not_cut_short(user: Any, fake_llm: FakeLLM) -> None:
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.reply("Hello there.")

    _stream(user, reply.pk)

    reply.refresh_from_db()
    assert (reply.status, reply.content) == (Message.Status.COMPLETE, "Hello there.")
    assert reply.finish_reason == "stop"
    assert not reply.cut_short


def test_continue_goes_on_after_the_cut_text_and_asks_the_model_with_it(
    user: Any, fake_llm: FakeLLM
) -> None:
    reply = _cut_reply(user, fake_llm)
    fake_llm.reset()
    fake_llm.reply("went to the sea together.")

    reopened = services.continue_reply(user=user, message_id=reply.pk)
    assert reopened.status == Message.Status.PENDING
    assert reopened.content == CUT  # kept while it goes on
    tokens, final = _stream(user, reply.pk)

    assert "".join(tokens) == " went to the sea together."  # only the new text is streamed
    assert final is not None
    reply.refresh_from_db()
    assert reply.content == CUT + " went to the sea together."
    assert (reply.status, reply.finish_reason) == ("complete", "stop")
    assert not reply.cut_short
    messages = fake_llm.chat_requests[-1]["messages"]
    assert messages[-2] == {"role": "assistant", "content": CUT}
    assert messages[-1] == {"role": "user", "content": services.CONTINUE_PROMPT}


def test_continue_refuses_a_reply_that_was_not_cut_short(user: Any, fake_llm: FakeLLM) -> None:
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.reply("Hello there.")
    _stream(user, reply.pk)

    with pytest.raises(services.NotRetryable):
        services.continue_reply(user=user, message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE


def test_continue_refuses_a_cut_reply_that_is_not_the_latest(user: Any, fake_llm: FakeLLM) -> None:
    reply = _cut_reply(user, fake_llm)
    _, later = services.send_message(
        user=user, conversation_id=reply.conversation_id, content="Never mind."
    )

    with pytest.raises(services.NotRetryable):
        services.continue_reply(user=user, message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert later.status == Message.Status.PENDING


def test_continue_counts_against_the_daily_token_budget(
    user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    reply = _cut_reply(user, fake_llm)
    settings.CHAT_DAILY_TOKEN_BUDGET = 1

    with pytest.raises(services.RateLimited):
        services.continue_reply(user=user, message_id=reply.pk)
    reply.refresh_from_db()
    assert reply.cut_short  # still offered once the budget resets


def test_continue_refuses_another_users_reply(
    user: Any, other_user: Any, fake_llm: FakeLLM
) -> None:
    reply = _cut_reply(user, fake_llm)

    with pytest.raises(Message.DoesNotExist):
        services.continue_reply(user=other_user, message_id=reply.pk)


def test_the_page_shows_a_cut_reply_as_cut_short_with_continue(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    reply = _cut_reply(user, fake_llm)

    page = user_client.get(reverse("chat:conversation", args=[reply.conversation_id]))
    html = page.content.decode()

    assert "Cut short" in html
    assert reverse("chat:continue", args=[reply.pk]) in html
    response = user_client.post(
        reverse("chat:continue", args=[reply.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    fragment = response.content.decode()
    assert f'data-stream-url="{reverse("chat:stream", args=[reply.pk])}"' in fragment
    assert "data-continuing" in fragment
    assert "Luna has a brother" in fragment  # the text stays while the rest streams


def test_the_page_shows_a_finished_reply_without_a_cut_note(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.reply("Hello there.")
    _stream(user, reply.pk)

    html = user_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()

    assert "Hello there." in html
    assert "Cut short" not in html
    assert reverse("chat:continue", args=[reply.pk]) not in html


def test_the_api_gives_the_finish_reason_and_continues_a_cut_reply(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    conversation = services.start_conversation(user=user)
    fake_llm.reply(CUT, finish_reason="length")
    response = user_client.post(
        f"/api/conversations/{conversation.pk}/messages/",
        {"content": "Tell me a story about Luna."},
        content_type=JSON,
    )
    assert response.status_code == 201
    reply = response.json()["reply"]
    assert (reply["status"], reply["finish_reason"], reply["cut_short"]) == (
        "complete",
        "length",
        True,
    )

    fake_llm.reply("went to the sea together.")
    continued = user_client.post(f"/api/messages/{reply['id']}/continue")

    assert continued.status_code == 200
    body = continued.json()
    assert body["content"] == CUT + " went to the sea together."
    assert (body["finish_reason"], body["cut_short"]) == ("stop", False)
    listed = user_client.get(f"/api/conversations/{conversation.pk}/messages/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows[-1]["content"] == body["content"]
    again = user_client.post(f"/api/messages/{reply['id']}/continue")
    assert again.status_code == 409
