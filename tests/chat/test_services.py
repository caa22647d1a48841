"""Chat services: sending, limits, prompts, streamed replies, retries, titles (fake LLM)."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.utils import timezone

from chat import services
from chat.models import Conversation, Message
from config import llm
from tests.factories import UserFactory
from tests.fake_llm import FakeLLM, error_body

pytestmark = pytest.mark.django_db


def _conversation(user: Any, title: str = "") -> Conversation:
    return services.start_conversation(user=user, title=title)


def _message(
    conversation: Conversation,
    role: str,
    content: str,
    *,
    minutes_ago: float,
    status: str = Message.Status.COMPLETE,
    **fields: Any,
) -> Message:
    return Message.objects.create(
        user=conversation.user,
        conversation=conversation,
        role=role,
        content=content,
        status=status,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        **fields,
    )


def _away_from_a_minute_boundary() -> None:
    # The per-minute limit counts in fixed wall-clock minutes: starting just before one ends
    # would split the sends over two windows.
    if 60 - time.time() % 60 < 2:
        time.sleep(2.5)


StreamHook = Callable[[list[str]], Awaitable[None]]


def _stream(
    user: Any, message_id: int, *, on_token: StreamHook | None = None
) -> tuple[list[str], Message | None]:
    """Consume `stream_reply` from sync code: the tokens in order and the final message."""

    async def collect() -> tuple[list[str], Message | None]:
        tokens: list[str] = []
        final: Message | None = None
        async for event in services.stream_reply(user=user, message_id=message_id):
            if event.kind == "token":
                tokens.append(event.text)
                if on_token is not None:
                    await on_token(tokens)
            elif event.kind == "done":
                final = event.message
        return tokens, final

    return async_to_sync(collect)()


# --- Sending ---


def test_send_message_saves_the_message_and_a_pending_reply(user: Any) -> None:
    conversation = _conversation(user)

    message, reply = services.send_message(
        user=user, conversation_id=conversation.pk, content="  What is the capital of Peru?  "
    )

    assert list(Message.objects.filter(conversation=conversation)) == [message, reply]
    message.refresh_from_db()
    reply.refresh_from_db()
    assert message.role == Message.Role.USER
    assert message.content == "What is the capital of Peru?"
    assert message.status == Message.Status.COMPLETE
    assert message.prompt_tokens > 0
    assert reply.role == Message.Role.ASSISTANT
    assert reply.status == Message.Status.PENDING
    assert reply.content == ""
    assert reply.created_at > message.created_at


def test_send_message_sets_a_provisional_title_from_the_first_message(user: Any) -> None:
    conversation = _conversation(user)

    services.send_message(
        user=user, conversation_id=conversation.pk, content="Plan   a trip\nto Lisbon"
    )

    conversation.refresh_from_db()
    assert conversation.title == "Plan a trip to Lisbon"


def test_send_message_shortens_a_long_provisional_title_at_a_word(user: Any) -> None:
    conversation = _conversation(user)
    content = "word " * 40

    services.send_message(user=user, conversation_id=conversation.pk, content=content)

    conversation.refresh_from_db()
    assert conversation.title.endswith("…")
    assert len(conversation.title) <= services.TITLE_MAX_CHARS
    assert conversation.title[:-1].split() == ["word"] * len(conversation.title[:-1].split())


def test_send_message_keeps_a_title_the_conversation_already_has(user: Any) -> None:
    conversation = _conversation(user, title="My project")

    services.send_message(user=user, conversation_id=conversation.pk, content="Hello")

    conversation.refresh_from_db()
    assert conversation.title == "My project"


@pytest.mark.parametrize("content", ["", "   ", "\n\t "])
def test_an_empty_message_is_refused_and_nothing_is_saved(user: Any, content: str) -> None:
    conversation = _conversation(user)

    with pytest.raises(services.EmptyMessage) as excinfo:
        services.send_message(user=user, conversation_id=conversation.pk, content=content)

    assert excinfo.value.message
    assert not Message.objects.exists()
    conversation.refresh_from_db()
    assert conversation.title == ""


def test_a_message_over_the_length_limit_is_refused(user: Any, settings: Any) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 20
    conversation = _conversation(user)

    services.send_message(user=user, conversation_id=conversation.pk, content="x" * 20)
    with pytest.raises(services.MessageTooLong) as excinfo:
        services.send_message(user=user, conversation_id=conversation.pk, content="x" * 21)

    assert "20" in excinfo.value.message
    assert Message.objects.filter(role=Message.Role.USER).count() == 1


def test_sending_to_another_users_conversation_raises_and_saves_nothing(
    user: Any, other_user: Any
) -> None:
    theirs = _conversation(other_user)

    with pytest.raises(Conversation.DoesNotExist):
        services.send_message(user=user, conversation_id=theirs.pk, content="Hi")

    assert not Message.objects.exists()
    theirs.refresh_from_db()
    assert theirs.title == ""


def test_the_third_message_in_a_minute_is_rate_limited(user: Any, settings: Any) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    conversation = _conversation(user)
    _away_from_a_minute_boundary()

    services.send_message(user=user, conversation_id=conversation.pk, content="one")
    services.send_message(user=user, conversation_id=conversation.pk, content="two")
    with pytest.raises(services.RateLimited) as excinfo:
        services.send_message(user=user, conversation_id=conversation.pk, content="three")

    assert "too quickly" in excinfo.value.message
    assert "2 a minute" in excinfo.value.message
    assert Message.objects.filter(role=Message.Role.USER).count() == 2


def test_the_rate_limit_counts_each_person_separately(
    user: Any, other_user: Any, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    mine, theirs = _conversation(user), _conversation(other_user)
    _away_from_a_minute_boundary()

    services.send_message(user=user, conversation_id=mine.pk, content="one")
    services.send_message(user=other_user, conversation_id=theirs.pk, content="one")

    with pytest.raises(services.RateLimited):
        services.send_message(user=user, conversation_id=mine.pk, content="two")


def test_sending_is_refused_once_the_daily_token_budget_is_spent(
    user: Any, other_user: Any, settings: Any
) -> None:
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    conversation = _conversation(user)
    # Earlier today, whatever the time of day the test runs (the budget is a UTC day: "5
    # minutes ago" is yesterday just after midnight).
    now = timezone.now()
    today = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 60
    _message(conversation, "user", "earlier", minutes_ago=today / 2, prompt_tokens=40)
    _message(conversation, "assistant", "answer", minutes_ago=today / 3, completion_tokens=59)
    # Yesterday's spending and other people's spending do not count.
    _message(conversation, "user", "old", minutes_ago=60 * 25, prompt_tokens=5000)
    _message(_conversation(other_user), "user", "theirs", minutes_ago=1, prompt_tokens=5000)

    services.send_message(user=user, conversation_id=conversation.pk, content="this fits")
    assert services.tokens_used_today(user=user) >= 100
    with pytest.raises(services.RateLimited) as excinfo:
        services.send_message(user=user, conversation_id=conversation.pk, content="over budget")

    assert "budget" in excinfo.value.message
    assert not Message.objects.filter(content="over budget").exists()


# --- Prompt ---


def test_build_prompt_puts_the_system_prompt_first_and_the_new_message_last(
    user: Any, settings: Any
) -> None:
    settings.CHAT_SYSTEM_PROMPT = "You are a test assistant."
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi!")

    prompt = services.build_prompt(user=user, reply=reply)

    assert prompt[0] == {"role": "system", "content": "You are a test assistant."}
    assert prompt[-1] == {"role": "user", "content": "Hi!"}
    assert len(prompt) == 2


def test_build_prompt_keeps_the_most_recent_history_in_order_within_the_budget(
    user: Any, settings: Any
) -> None:
    conversation = _conversation(user)
    turns = [
        ("user", "first question about apples"),
        ("assistant", "first answer about apples"),
        ("user", "second question about pears"),
        ("assistant", "second answer about pears"),
        ("user", "third question about plums"),
        ("assistant", "third answer about plums"),
    ]
    for index, (role, content) in enumerate(turns):
        _message(conversation, role, content, minutes_ago=10 - index)
    kept = turns[-3:]
    settings.CHAT_HISTORY_TOKEN_BUDGET = sum(llm.count_tokens(c) for _, c in kept)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Now?")

    prompt = services.build_prompt(user=user, reply=reply)

    assert prompt[0]["role"] == "system"
    assert prompt[1:-1] == [{"role": role, "content": content} for role, content in kept]
    assert prompt[-1] == {"role": "user", "content": "Now?"}
    assert "apples" not in str(prompt)


def test_build_prompt_leaves_out_failed_empty_replies(user: Any) -> None:
    conversation = _conversation(user)
    _message(conversation, "user", "an earlier question", minutes_ago=3)
    _message(conversation, "assistant", "", minutes_ago=2, status=Message.Status.FAILED)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Again")

    prompt = services.build_prompt(user=user, reply=reply)

    assert [m["content"] for m in prompt[1:]] == ["an earlier question", "Again"]


def test_build_prompt_never_includes_other_conversations_or_other_users(
    user: Any, other_user: Any
) -> None:
    conversation = _conversation(user)
    _message(conversation, "user", "my own earlier message", minutes_ago=3)
    _message(_conversation(user), "user", "from my other conversation", minutes_ago=2)
    theirs = _conversation(other_user)
    _message(theirs, "user", "someone else's secret", minutes_ago=2)
    # Even a row of theirs that (wrongly) pointed at my conversation stays out.
    Message.objects.create(
        user=other_user,
        conversation=conversation,
        role="user",
        content="a stray row of another user",
        created_at=timezone.now() - timedelta(minutes=1),
    )
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hello")

    prompt = services.build_prompt(user=user, reply=reply)

    text = str(prompt)
    assert "my own earlier message" in text
    assert "from my other conversation" not in text
    assert "someone else's secret" not in text
    assert "a stray row of another user" not in text


# --- Streaming ---

stream_db = pytest.mark.django_db(transaction=True)


@stream_db
def test_streamed_tokens_arrive_in_order_and_the_reply_is_saved_complete(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    pieces = ["Hel", "lo", " there", ", friend", "."]
    fake_llm.reply(
        "".join(pieces),
        tokens=pieces,
        usage={"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
    )

    tokens, final = _stream(user, reply.pk)

    assert tokens == pieces
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Hello there, friend."
    assert reply.error == ""
    assert (reply.prompt_tokens, reply.completion_tokens) == (42, 7)
    assert final is not None
    assert final.pk == reply.pk
    assert final.status == Message.Status.COMPLETE


@stream_db
def test_the_streamed_request_carries_the_prompt_and_the_chat_model(
    user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_SYSTEM_PROMPT = "Be brief."
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")

    _stream(user, reply.pk)

    [request] = fake_llm.chat_requests
    assert request["model"] == "fake-chat"
    assert request["stream"] is True
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


@stream_db
@pytest.mark.parametrize("status", [400, 500])
def test_a_provider_error_quoting_the_request_leaves_its_words_out_of_the_logs(
    user: Any, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    secret = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e"
    said = f"My key is {secret}, keep it"
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content=said)
    # Some OpenAI-compatible servers echo the offending input in their error message.
    fake_llm.fail(status, body=error_body(status, f"Input should be valid: {said!r}"))

    with caplog.at_level("DEBUG"):
        _stream(user, reply.pk)

    reply.refresh_from_db()
    assert reply.status == Message.Status.FAILED
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failed, [r.getMessage() for r in caplog.records]
    assert str(status) in failed[0].getMessage()
    assert all(secret not in r.getMessage() and "keep it" not in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert secret not in reply.error


@stream_db
def test_reply_is_saved_as_failed_when_the_llm_returns_500(user: Any, fake_llm: FakeLLM) -> None:
    conversation = _conversation(user)
    message, reply = services.send_message(
        user=user, conversation_id=conversation.pk, content="Are you there?"
    )
    fake_llm.fail(500)

    tokens, final = _stream(user, reply.pk)

    assert tokens == []
    reply.refresh_from_db()
    assert reply.status == Message.Status.FAILED
    assert reply.content == ""
    assert reply.error == llm.LLMError.message
    assert "500" not in reply.error  # the person sees a sentence, not a status code
    assert final is not None
    assert final.status == Message.Status.FAILED
    message.refresh_from_db()
    assert message.content == "Are you there?"
    assert message.status == Message.Status.COMPLETE


@stream_db
def test_a_cut_stream_fails_the_reply_and_keeps_the_text_that_came(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Go on")
    fake_llm.cut_stream(3, "One two three four five six.")

    tokens, _ = _stream(user, reply.pk)

    assert tokens == ["One ", "two ", "three "]
    reply.refresh_from_db()
    assert reply.status == Message.Status.FAILED
    assert reply.content == "One two three "
    assert reply.error
    assert reply.completion_tokens > 0


@stream_db
def test_a_reply_that_hangs_past_the_read_timeout_fails_with_a_timeout_message(
    user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_READ_TIMEOUT = 0.5
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.hang(2)

    _stream(user, reply.pk)

    reply.refresh_from_db()
    assert reply.status == Message.Status.FAILED
    assert reply.error == llm.LLMTimeout.message
    assert "too long" in reply.error


@stream_db
def test_stopping_a_reply_keeps_exactly_the_tokens_streamed_before_the_stop(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Count")
    pieces = [f"{n} " for n in range(60)]
    full_text = "".join(pieces)
    fake_llm.reply(full_text, tokens=pieces, delay=0.05)

    async def stop_after_the_first_token(tokens: list[str]) -> None:
        if len(tokens) == 1:
            await sync_to_async(services.request_stop)(user=user, message_id=reply.pk)

    tokens, final = _stream(user, reply.pk, on_token=stop_after_the_first_token)

    reply.refresh_from_db()
    assert reply.status == Message.Status.STOPPED
    assert reply.content == "".join(tokens)
    assert reply.content
    assert full_text.startswith(reply.content)
    assert len(reply.content) < len(full_text)
    assert final is not None
    assert final.status == Message.Status.STOPPED
    # The upstream stream was closed rather than read to the end.
    assert fake_llm.wait_for_disconnects(1)


def test_request_stop_refuses_another_users_message(user: Any, other_user: Any) -> None:
    theirs = _conversation(other_user)
    _, reply = services.send_message(user=other_user, conversation_id=theirs.pk, content="Hi")

    with pytest.raises(Message.DoesNotExist):
        services.request_stop(user=user, message_id=reply.pk)


@stream_db
def test_a_reply_cannot_be_streamed_twice(user: Any, fake_llm: FakeLLM) -> None:
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.reply("First and only.")
    _stream(user, reply.pk)

    with pytest.raises(services.NotRetryable):
        _stream(user, reply.pk)

    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "First and only."
    assert len(fake_llm.chat_requests) == 1


@stream_db
def test_another_users_reply_cannot_be_streamed(
    user: Any, other_user: Any, fake_llm: FakeLLM
) -> None:
    theirs = _conversation(other_user)
    _, reply = services.send_message(user=other_user, conversation_id=theirs.pk, content="Hi")

    with pytest.raises(Message.DoesNotExist):
        _stream(user, reply.pk)

    reply.refresh_from_db()
    assert reply.status == Message.Status.PENDING
    assert fake_llm.chat_requests == []


def test_an_embedding_started_early_is_the_messages_own_and_taken_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from memory import embeddings

    monkeypatch.setattr(services, "_early", {})

    text = "What should I cook tonight?"
    services.embed_early(user_id=1, text=text)
    services.embed_early(user_id=1, text=text)  # already started: not a second one

    assert list(services._early) == [(1, text)]
    vector = services._message_embedding(1, text)
    assert np.allclose(vector, embeddings.embed_one(text), atol=1e-6)
    assert services._early == {}
    # Nothing started: computed on the spot, the same vector.
    assert np.allclose(services._message_embedding(2, text), vector, atol=1e-6)


def test_embeddings_started_early_and_never_used_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "_early", {})
    monkeypatch.setattr(services, "_EARLY_LIMIT", 3)
    for index in range(6):
        services.embed_early(user_id=index, text=f"message {index}")

    assert [key[0] for key in services._early] == [3, 4, 5]
    for index in (3, 4, 5):
        services._message_embedding(index, f"message {index}")
    assert services._early == {}


@stream_db
def test_another_users_reply_leaves_no_embedding_started(
    user: Any, other_user: Any, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_early", {})
    conversation = _conversation(user)
    services.send_message(user=user, conversation_id=conversation.pk, content="Mine")
    theirs = _conversation(other_user)
    _, reply = services.send_message(user=other_user, conversation_id=theirs.pk, content="Hi")

    with pytest.raises(Message.DoesNotExist):
        _stream(user, reply.pk)

    # Their message is not read for this user, so nothing of theirs (or of this user's own
    # conversation) was embedded on their reply's behalf.
    assert services._early == {}


# --- Retrying ---


def test_retry_reopens_a_failed_last_reply_as_pending(user: Any) -> None:
    conversation = _conversation(user)
    _message(conversation, "user", "question", minutes_ago=2)
    failed = _message(
        conversation,
        "assistant",
        "partial",
        minutes_ago=1,
        status=Message.Status.FAILED,
        error="The reply was cut off.",
    )

    reopened = services.retry_reply(user=user, message_id=failed.pk)

    failed.refresh_from_db()
    assert reopened.pk == failed.pk
    assert failed.status == Message.Status.PENDING
    assert failed.content == ""
    assert failed.error == ""


@stream_db
def test_a_retried_reply_can_be_streamed_again(user: Any, fake_llm: FakeLLM) -> None:
    conversation = _conversation(user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.fail(500)
    _stream(user, reply.pk)

    services.retry_reply(user=user, message_id=reply.pk)
    fake_llm.reply("Second time lucky.")
    _stream(user, reply.pk)

    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == "Second time lucky."
    assert reply.error == ""


def test_retry_refuses_a_complete_reply(user: Any) -> None:
    conversation = _conversation(user)
    _message(conversation, "user", "question", minutes_ago=2)
    complete = _message(conversation, "assistant", "answer", minutes_ago=1)

    with pytest.raises(services.NotRetryable):
        services.retry_reply(user=user, message_id=complete.pk)

    complete.refresh_from_db()
    assert complete.status == Message.Status.COMPLETE
    assert complete.content == "answer"


def test_retry_refuses_a_reply_that_is_not_the_last(user: Any) -> None:
    conversation = _conversation(user)
    _message(conversation, "user", "question", minutes_ago=4)
    failed = _message(
        conversation, "assistant", "", minutes_ago=3, status=Message.Status.FAILED, error="x"
    )
    _message(conversation, "user", "another question", minutes_ago=2)
    _message(conversation, "assistant", "answer", minutes_ago=1)

    with pytest.raises(services.NotRetryable):
        services.retry_reply(user=user, message_id=failed.pk)

    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED


def test_retry_refuses_another_users_reply(user: Any, other_user: Any) -> None:
    theirs = _conversation(other_user)
    _message(theirs, "user", "question", minutes_ago=2)
    failed = _message(theirs, "assistant", "", minutes_ago=1, status=Message.Status.FAILED)

    with pytest.raises(Message.DoesNotExist):
        services.retry_reply(user=user, message_id=failed.pk)

    failed.refresh_from_db()
    assert failed.status == Message.Status.FAILED


# --- Conversations ---


def test_rename_conversation_normalizes_the_title(user: Any) -> None:
    conversation = _conversation(user, title="Old")

    services.rename_conversation(
        user=user, conversation_id=conversation.pk, title="  Holiday \n plans "
    )

    conversation.refresh_from_db()
    assert conversation.title == "Holiday plans"


def test_renaming_another_users_conversation_raises_and_changes_nothing(
    user: Any, other_user: Any
) -> None:
    theirs = _conversation(other_user, title="Theirs")

    with pytest.raises(Conversation.DoesNotExist):
        services.rename_conversation(user=user, conversation_id=theirs.pk, title="Mine now")

    theirs.refresh_from_db()
    assert theirs.title == "Theirs"


def test_deleting_a_conversation_deletes_its_messages(user: Any) -> None:
    conversation = _conversation(user)
    services.send_message(user=user, conversation_id=conversation.pk, content="Hi")

    services.delete_conversation(user=user, conversation_id=conversation.pk)

    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


def test_deleting_another_users_conversation_raises_and_changes_nothing(
    user: Any, other_user: Any
) -> None:
    theirs = _conversation(other_user, title="Theirs")
    services.send_message(user=other_user, conversation_id=theirs.pk, content="Hi")

    with pytest.raises(Conversation.DoesNotExist):
        services.delete_conversation(user=user, conversation_id=theirs.pk)

    assert Conversation.objects.filter(pk=theirs.pk, title="Theirs").exists()
    assert Message.objects.filter(conversation=theirs).count() == 2


# --- Titles ---


def _conversation_with_first_message(user: Any, content: str) -> Conversation:
    conversation = _conversation(user)
    services.send_message(user=user, conversation_id=conversation.pk, content=content)
    conversation.refresh_from_db()
    return conversation


def test_generate_title_replaces_the_provisional_title_with_a_cleaned_one(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation_with_first_message(user, "I want to visit Lisbon next May")
    fake_llm.reply('Title: "Trip to Lisbon"\n')

    title = services.generate_title(conversation_id=conversation.pk)

    conversation.refresh_from_db()
    assert title == "Trip to Lisbon"
    assert conversation.title == "Trip to Lisbon"
    [request] = fake_llm.chat_requests
    assert request["model"] == "fake-small"
    assert any("I want to visit Lisbon next May" in m["content"] for m in request["messages"])


def test_generate_title_strips_markdown_from_the_models_answer(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation_with_first_message(user, "I want to visit Lisbon next May")
    fake_llm.reply("**Title:** **Trip** to _Lisbon_ in `May`\n\nHope this helps!")

    title = services.generate_title(conversation_id=conversation.pk)

    conversation.refresh_from_db()
    assert title == conversation.title == "Trip to Lisbon in May"


def test_generate_title_keeps_the_provisional_title_when_the_answer_is_unusable(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation_with_first_message(user, "Hello there")
    fake_llm.reply('""')

    assert services.generate_title(conversation_id=conversation.pk) is None

    conversation.refresh_from_db()
    assert conversation.title == "Hello there"


def test_generate_title_keeps_a_title_the_person_gave_before_it_ran(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation_with_first_message(user, "I want to visit Lisbon next May")
    services.rename_conversation(user=user, conversation_id=conversation.pk, title="Holidays")
    fake_llm.reply("Trip to Lisbon")

    services.generate_title(conversation_id=conversation.pk)

    conversation.refresh_from_db()
    assert conversation.title == "Holidays"


@pytest.mark.django_db(transaction=True)
def test_generate_title_keeps_a_title_the_person_gave_while_it_ran(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation_with_first_message(user, "I want to visit Lisbon next May")
    fake_llm.reply("Trip to Lisbon", delay=0.5)
    errors: list[BaseException] = []

    def generate() -> None:
        try:
            services.generate_title(conversation_id=conversation.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=generate)
    worker.start()
    assert fake_llm.wait_for(lambda: len(fake_llm.chat_requests) == 1)
    services.rename_conversation(user=user, conversation_id=conversation.pk, title="Holidays")
    worker.join(10)

    assert not worker.is_alive()
    assert errors == []
    conversation.refresh_from_db()
    assert conversation.title == "Holidays"


def test_generate_title_raises_and_keeps_the_title_when_the_llm_fails(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _conversation_with_first_message(user, "Hello there")
    fake_llm.fail(500)

    with pytest.raises(llm.LLMError):
        services.generate_title(conversation_id=conversation.pk)

    conversation.refresh_from_db()
    assert conversation.title == "Hello there"


def test_generate_title_does_nothing_for_a_deleted_conversation(fake_llm: FakeLLM) -> None:
    user = UserFactory()
    conversation = _conversation_with_first_message(user, "Hello there")
    services.delete_conversation(user=user, conversation_id=conversation.pk)

    assert services.generate_title(conversation_id=conversation.pk) is None
    assert fake_llm.chat_requests == []


@pytest.mark.django_db(transaction=True)
def test_a_reply_streaming_while_the_account_is_erased_ends_quietly(
    user: Any, fake_llm: FakeLLM
) -> None:
    from accounts.services import erase_account

    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.reply("one two three four", tokens=["one ", "two ", "three ", "four"])

    async def run() -> list[str]:
        kinds = []
        async for event in services.stream_reply(user=user, message_id=reply.pk):
            kinds.append(event.kind)
            if len(kinds) == 1:
                await sync_to_async(erase_account)(user=user)
        return kinds

    kinds = async_to_sync(run)()
    assert kinds[-1] == "done"
    assert not Message.objects.filter(pk=reply.pk).exists()


@pytest.mark.django_db
def test_replies_orphaned_mid_stream_are_marked_failed_and_can_be_retried(user: Any) -> None:
    conversation = services.start_conversation(user=user)
    _, orphan = services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    Message.objects.filter(pk=orphan.pk).update(
        status=Message.Status.STREAMING,
        content="Half a rep",
        updated_at=timezone.now() - timedelta(hours=1),
    )
    other = services.start_conversation(user=user)
    _, live = services.send_message(user=user, conversation_id=other.pk, content="Hello")
    Message.objects.filter(pk=live.pk).update(status=Message.Status.STREAMING)

    assert services.fail_interrupted_replies(older_than=timedelta(minutes=15)) == 1
    orphan.refresh_from_db()
    live.refresh_from_db()
    assert orphan.status == Message.Status.FAILED and orphan.content == "Half a rep"
    assert "interrupted" in orphan.error
    assert live.status == Message.Status.STREAMING  # a stream still in progress is left alone
    assert services.retry_reply(user=user, message_id=orphan.pk).status == Message.Status.PENDING
