"""Choosing the model endpoint in the chat and keeping memories local, in a real browser.

Screenshots at desktop (1280x800) and phone (390x844) size go to SCREENSHOT_DIR when set,
else screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from config import stack
from memory import services as memory_services
from memory.models import Memory
from tests.chat.test_browser import sign_in
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def shots(page: Any, name: str) -> None:
    """Keep the page at desktop and at phone size, then go back to desktop."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or stack.BASE_DIR / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        # From the top: a full-page shot of a scrolled page paints the sticky bar mid-page.
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(150)  # the layout settles after a resize
        page.screenshot(path=str(folder / f"{name}-{size}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


@pytest.fixture
def hosted(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        monkeypatch.setenv("HOSTED_BROWSER_KEY", "sk-browser-test-0123456789")
        settings.LLM_LOCAL = "true"
        settings.LLM_LABEL = "Local SmolLM2"
        settings.LLM_EXTRA_ENDPOINTS = [
            {
                "name": "hosted",
                "label": "Hosted GPT",
                "base_url": fake.base_url,
                "model": "hosted-chat",
                "api_key_env": "HOSTED_BROWSER_KEY",
                "local": False,
                "layout": "large",
            }
        ]
        yield fake


def test_choose_the_hosted_endpoint_and_keep_memories_local(
    page: Any, user: Any, fake_llm: FakeLLM, hosted: FakeLLM
) -> None:
    memory_services.remember(user=user, content="I am allergic to peanuts", kind="profile")
    memory_services.remember(user=user, content="My name is Ana", kind="profile")
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))

    picker = page.get_by_label("Model that answers in this chat")
    expect(picker).to_have_value("default")
    picker.select_option(label="Hosted GPT (hosted)")
    expect(page.locator(".endpoint-state")).to_have_text("Hosted")
    expect(page.get_by_label("Model that answers in this chat")).to_have_value("hosted")

    hosted.reply("Try a stir-fry with rice, Ana.")
    page.get_by_label("Message").fill("What should I cook tonight?")
    page.get_by_label("Message").press("Enter")
    reply = page.locator(".message-assistant").last
    expect(reply).to_contain_text("Try a stir-fry with rice, Ana.")
    expect(reply.locator(".held-back")).to_have_text("1 memory kept local: health")
    expect(page.locator("#title-text")).to_have_text("What should I cook tonight?")
    # New chats start on the model this one uses now.
    expect(page.get_by_label("Model for the new chat")).to_have_value("hosted")
    prompt = "\n".join(m["content"] for m in hosted.chat_requests[-1]["messages"])
    assert "Ana" in prompt and "peanuts" not in prompt
    assert not fake_llm.chat_requests  # the local model was not asked
    reply.locator("details.used-memories summary").click()
    shots(page, "chat-hosted-endpoint")

    # The choice is kept with the conversation.
    page.reload()
    expect(page.get_by_label("Model that answers in this chat")).to_have_value("hosted")

    page.get_by_role("link", name="What I know about you").click()
    allergy = page.locator("article.memory-item", has_text="I am allergic to peanuts")
    name = page.locator("article.memory-item", has_text="My name is Ana")
    expect(allergy.locator(".local-mark")).to_have_text("Local only: health")
    expect(name.locator(".local-mark")).to_have_count(0)
    name.get_by_role("button", name="Keep local").click()
    expect(name.locator(".local-mark")).to_have_text("Local only: marked by you")
    allergy.get_by_role("button", name="Allow hosted models").click()
    expect(allergy.locator(".local-mark")).to_have_count(0)
    expect(allergy.get_by_role("button", name="Use my rules")).to_be_visible()
    assert Memory.objects.get(user=user, content__contains="peanuts").local_only is False

    rules = page.locator("#local-only-rules")
    rules.get_by_label("Facts").check()
    rules.get_by_role("button", name="Apply").click()
    expect(page.locator("#local-only-rules .saved")).to_have_text("Applied.")
    expect(allergy).to_contain_text("allowed on hosted models (set by you)")
    shots(page, "memory-local-only")

    page.goto("/account/")
    expect(page.locator("#local-only-rules").get_by_label("Facts")).to_be_checked()
    shots(page, "account-local-only")
