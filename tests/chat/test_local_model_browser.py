"""Thirty turns in headless Chromium on the real local model, with background work running.

Two llama.cpp servers of SmolLM2-135M are started the way `make run` starts them (one for
chat, one for extraction, titles and summaries, both with interruptions off), a real Celery
worker learns from every message, titles each conversation and writes summaries while the
person keeps chatting, and no reply may be cut off (issue #12).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chat import services as chat_services
from chat import tasks
from chat.models import Conversation, Message
from config import stack
from memory.models import ConversationSummary, ExtractionRun, Memory
from tests.conftest import screenshot
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

# Two conversations of fifteen turns: what a person says about themselves (the worker learns
# it) mixed with questions (the model answers them from what was learned, or not).
FIRST = [
    "Hi! My name is Marta.",
    "I live in Lisbon.",
    "How do I keep basil alive indoors?",
    "I have a dog called Bruno.",
    "Give me one idea for a rainy Sunday.",
    "I'm vegetarian.",
    "What is a good first step to learn the cello?",
    "I work as a nurse.",
    "Suggest a short name for a sourdough starter.",
    "My brother Ravi lives in Pune.",
    "What should I cook for dinner tonight?",
    "I like hiking in the mountains.",
    "Name one fruit that is rich in vitamin C.",
    "I prefer short answers.",
    "Thanks, that is all for now.",
]
SECOND = [
    "I'm planning a trip to Porto next month.",
    "What should I pack for a weekend trip?",
    "I speak Portuguese and English.",
    "Where do I live?",
    "My favourite colour is green.",
    "Recommend a board game for two people.",
    "I started learning to paint last year.",
    "What is my dog's name?",
    "I drink tea, not coffee.",
    "How many legs does a spider have?",
    "My sister Lena is a teacher.",
    "Give me a tip for sleeping better.",
    "I go swimming on Fridays.",
    "What is the capital of Norway?",
    "Goodbye for today!",
]
MAX_TOKENS = 32
READ_TIMEOUT = 240.0  # a loaded machine: a request may wait its turn at the model server
SUMMARY_EVERY = 6
# Short prompts: prompt evaluation, not generation, is most of a turn's time on this model.
HISTORY_TOKENS = 300
RECALL_TOKENS = 150
# Upper bounds for waits, never assertions on time: a reply on a loaded 2-core machine.
REPLY_WAIT_MS = 240_000
BACKGROUND_WAIT_S = 300.0


def _log_dir() -> Path:
    return stack.data_dir() / "test"


@pytest.fixture(scope="module")
def local_models() -> Iterator[dict[str, str]]:
    """A chat and a background llama.cpp server, as `config.run` starts them for `make run`."""
    pytest.importorskip("llama_cpp", reason="`make test` installs the local model server")
    model = stack.local_model_path()
    context = int(os.environ.get("LLM_CONTEXT_TOKENS", "4096"))
    chat = stack.LocalModelServer(
        model=model,
        log_path=_log_dir() / "llm-turns-chat.log",
        context_tokens=context,
        name="the local model server (chat)",
    )
    background = stack.LocalModelServer(
        model=model,
        log_path=_log_dir() / "llm-turns-background.log",
        context_tokens=context,
        threads=1,
        name="the local model server (background)",
    )
    assert not chat.interrupt_requests and not background.interrupt_requests
    try:
        urls = {"chat": chat.start(), "background": background.start()}
        yield urls
    finally:
        background.stop()
        chat.stop()


@pytest.fixture
def worker_env(worker_env: dict[str, str], local_models: dict[str, str]) -> dict[str, str]:
    return {
        **worker_env,
        "LLM_BASE_URL": local_models["chat"],
        "LLM_BACKGROUND_BASE_URL": local_models["background"],
        "LLM_CHAT_MODEL": stack.LOCAL_MODEL_ALIAS,
        "LLM_BACKGROUND_MODEL": stack.LOCAL_MODEL_ALIAS,
        "LLM_MAX_TOKENS": str(MAX_TOKENS),
        "LLM_READ_TIMEOUT": str(READ_TIMEOUT),
        "SUMMARY_EVERY_MESSAGES": str(SUMMARY_EVERY),
    }


@pytest.fixture
def use_local_models(local_models: dict[str, str], settings: Any) -> None:
    settings.LLM_BASE_URL = local_models["chat"]
    settings.LLM_BACKGROUND_BASE_URL = local_models["background"]
    settings.LLM_CHAT_MODEL = stack.LOCAL_MODEL_ALIAS
    settings.LLM_BACKGROUND_MODEL = stack.LOCAL_MODEL_ALIAS
    settings.LLM_MAX_TOKENS = MAX_TOKENS
    settings.LLM_READ_TIMEOUT = READ_TIMEOUT
    settings.SUMMARY_EVERY_MESSAGES = SUMMARY_EVERY
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_HISTORY_TOKEN_BUDGET = HISTORY_TOKENS
    settings.MEMORY_RECALL_TOKEN_BUDGET = RECALL_TOKENS


def sign_in(page: Any, user: Any) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_login").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))


def say(page: Any, text: str, turn: int) -> None:
    """Send one message and wait until its reply has finished in the page, however it ended."""
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")
    replies = page.locator(".message-assistant")
    expect(replies).to_have_count(turn)
    expect(page.locator(".message-user").last).to_contain_text(text)
    expect(replies.last).to_have_class(
        re.compile(r"\bstatus-(complete|failed|stopped)\b"), timeout=REPLY_WAIT_MS
    )


def converse(page: Any, messages: list[str], *, sweep_every: int) -> int:
    """One conversation in a new chat; the beat's summary sweep runs now and then meanwhile."""
    page.get_by_role("button", name=re.compile(r"Start a chat|New chat")).first.click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")
    conversation_id = int(re.findall(r"/chat/c/(\d+)/", page.url)[0])
    for turn, text in enumerate(messages, start=1):
        say(page, text, turn)
        if turn % sweep_every == 0:
            tasks.sweep_summaries_task.delay()  # what the beat does every few minutes
    # Every reply of this conversation finished in the page, none failed or was cut off.
    expect(page.locator(".message-assistant.status-complete")).to_have_count(len(messages))
    expect(page.locator(".message-assistant.status-failed")).to_have_count(0)
    expect(page.locator(".message-assistant .error-text")).to_have_count(0)
    expect(page.locator("#messages")).not_to_contain_text("cut off")
    return conversation_id


def wait_for_background(user: Any, conversation_ids: list[int], sent: int) -> None:
    deadline = time.monotonic() + BACKGROUND_WAIT_S
    while time.monotonic() < deadline:
        runs = ExtractionRun.objects.filter(user=user).count()
        summaries = ConversationSummary.objects.filter(user=user).count()
        if runs >= sent and summaries >= 1 and any(map(_has_generated_title, conversation_ids)):
            return
        time.sleep(1)


def _has_generated_title(conversation_id: int) -> bool:
    conversation = Conversation.objects.get(pk=conversation_id)
    first = (
        Message.objects.filter(conversation_id=conversation_id, role=Message.Role.USER)
        .order_by("created_at")
        .values_list("content", flat=True)
        .first()
    )
    return bool(conversation.title) and conversation.title != chat_services._provisional_title(
        first or ""
    )


@pytest.mark.django_db(transaction=True)
def test_thirty_turns_on_the_local_model_are_never_cut_off_by_background_work(
    use_local_models: None, celery_worker: Any, page: Any, user: Any
) -> None:
    sign_in(page, user)
    first = converse(page, FIRST, sweep_every=5)
    screenshot(page, "local-model-turns-first")
    second = converse(page, SECOND, sweep_every=5)
    screenshot(page, "local-model-turns-second")
    tasks.sweep_summaries_task.delay()

    # Every reply is complete, with text, in the database.
    replies = list(Message.objects.filter(user=user, role=Message.Role.ASSISTANT))
    assert len(replies) == len(FIRST) + len(SECOND) == 30
    unfinished = [(r.pk, r.status, r.error) for r in replies if r.status != "complete"]
    assert unfinished == []
    assert all(r.content.strip() for r in replies), [r.pk for r in replies if not r.content]
    assert all(r.model == stack.LOCAL_MODEL_ALIAS for r in replies)
    assert {r.conversation_id for r in replies} == {first, second}

    # The worker learned from every message, titled a conversation and summarized one.
    sent = list(Message.objects.filter(user=user, role=Message.Role.USER).values_list("pk"))
    wait_for_background(user, [first, second], len(sent))
    runs = ExtractionRun.objects.filter(user=user)
    assert set(runs.values_list("source_message_id")) == set(sent)
    # Concurrently, not afterwards: the worker had learned from messages before the last reply.
    last_reply = max(replies, key=lambda r: r.updated_at)
    assert runs.filter(created_at__lt=last_reply.updated_at).exists()
    assert Memory.objects.filter(user=user, content="I have a dog called Bruno.").exists()
    assert any(map(_has_generated_title, [first, second]))
    summary = ConversationSummary.objects.filter(user=user).first()
    assert summary is not None and summary.conversation_id in {first, second}
    assert summary.content.strip()
