from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Message
from tests.conftest import screenshot
from tests.factories import PASSWORD
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.browser


def sign_in(page: Any, user: Any) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_login").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(r"/chat/")


def test_chat_streams_stops_and_retries_in_the_browser(
    page: Any, user: Any, fake_llm: FakeLLM
) -> None:
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")  # deferred scripts (htmx, chat.js) have run

    # 1. A reply streams in token by token and renders as markdown.
    tokens = ["Hello", " Ada", "! Here is ", "**bold**", " text."]
    fake_llm.reply("".join(tokens), tokens=tokens, delay=0.15)
    box = page.get_by_label("Message")
    box.fill("Hi, I'm Ada")
    box.press("Enter")
    user_bubble = page.locator(".message-user").last
    expect(user_bubble).to_contain_text("Hi, I'm Ada")
    reply = page.locator(".message-assistant").last
    expect(reply).to_contain_text("Hello Ada", timeout=5000)
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply).to_have_class(re.compile(r"status-complete"))
    screenshot(page, "chat-reply")

    # Shift+Enter adds a line instead of sending.
    box.fill("line one")
    box.press("Shift+Enter")
    box.type("line two")
    assert box.input_value() == "line one\nline two"
    box.fill("")

    # 2. Stop keeps what came.
    long_tokens = [f"chunk{i} " for i in range(200)]
    fake_llm.reply("".join(long_tokens), tokens=long_tokens, delay=0.05)
    box.fill("Tell me a long story")
    page.get_by_role("button", name="Send").click()
    streaming = page.locator(".message-assistant").last
    expect(streaming).to_contain_text("chunk3")
    streaming.get_by_role("button", name="Stop").click()
    stopped = page.locator(".message-assistant.status-stopped").last
    expect(stopped).to_contain_text("Stopped")
    saved = Message.objects.filter(role="assistant").order_by("-id").first()
    assert saved is not None and saved.status == Message.Status.STOPPED
    assert saved.content.startswith("chunk0 chunk1 chunk2 chunk3")
    assert len(saved.content) < len("".join(long_tokens))

    # 3. An LLM failure keeps the message, shows an error and a retry button that works.
    fake_llm.fail(500)
    box.fill("Are you there?")
    box.press("Enter")
    failed = page.locator(".message-assistant.status-failed").last
    expect(failed.get_by_role("alert")).to_be_visible()
    screenshot(page, "chat-failed")
    assert Message.objects.filter(role="user", content="Are you there?").exists()
    fake_llm.reply("Yes, I'm here.")
    failed.get_by_role("button", name="Retry").click()
    expect(page.locator(".message-assistant").last).to_contain_text("Yes, I'm here.")
    expect(page.locator(".message-assistant").last).to_have_class(re.compile(r"status-complete"))

    # The conversation shows up in the sidebar with its (provisional) title.
    expect(page.locator("#conversation-list")).to_contain_text("Hi, I'm Ada")
    assert Conversation.objects.filter(user=user).count() == 1


def test_chat_page_at_phone_width(page: Any, user: Any, fake_llm: FakeLLM) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_load_state("domcontentloaded")
    fake_llm.reply("A short answer.")
    page.get_by_label("Message").fill("Hello from my phone")
    page.get_by_label("Message").press("Enter")
    expect(page.locator(".message-assistant").last).to_contain_text("A short answer.")
    send = page.get_by_role("button", name="Send")
    box = send.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    screenshot(page, "chat-phone")
