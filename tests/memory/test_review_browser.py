"""Review before saving in headless Chromium: turn "Ask me before remembering" on, chat (a
real Celery worker extracts), answer "Remember this?" in the chat, then review what waits on
the memory page, at desktop and phone size."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from memory.models import Memory, PendingMemory
from tests.conftest import screenshot
from tests.fake_llm import FakeLLM
from tests.memory.test_browser import sign_in

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def responder(request: dict[str, Any]) -> str | dict[str, Any]:
    """A model that proposes nothing of its own (the person's statements are read anyway)."""
    schema = (request.get("response_format") or {}).get("schema") or {}
    if "facts" in schema.get("properties", {}):
        return {"facts": [], "entities": []}
    if "decisions" in schema.get("properties", {}):
        return {"decisions": []}
    return "Noted, thank you."


def _say(page: Any, text: str) -> Any:
    replies = page.locator(".message-assistant")
    before = replies.count()
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")
    expect(replies).to_have_count(before + 1)
    reply = replies.nth(before)
    expect(reply).to_contain_text("Noted, thank you.")
    return reply


def _shoot(page: Any, name: str) -> None:
    """Desktop, then phone size, then back (no transitions: the drawer must not be caught
    sliding)."""
    page.emulate_media(reduced_motion="reduce")
    page.set_viewport_size(DESKTOP)
    screenshot(page, f"review-{name}-desktop")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    screenshot(page, f"review-{name}-phone")
    # Nothing may push a phone's page sideways.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (name, width)
    page.set_viewport_size(DESKTOP)


def test_ask_before_remembering_answered_in_the_chat_and_on_the_memory_page(
    celery_worker: Any, page: Any, user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = responder
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, user)
    # The person starts with one memory, added on the page.
    page.goto("/memory/")
    page.locator(".add-memory select").select_option("profile")
    page.get_by_label("Add something for Mnemo to remember").fill("I live in Lisbon.")
    page.locator(".add-memory").get_by_role("button", name="Add").click()
    expect(page.locator("#group-profile")).to_contain_text("I live in Lisbon.")

    # 1. The switch, on the memory page.
    switch = page.locator("#review-switch")
    expect(switch).to_contain_text("Ask me before remembering: off")
    switch.get_by_role("button", name="Ask me first").click()
    expect(switch).to_contain_text("Ask me before remembering: on")

    # 2. A turn: what it taught waits, and the chat asks.
    page.goto("/chat/")
    page.get_by_role("button", name="Start a chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")
    reply = _say(page, "I work as a nurse. I love hiking.")
    notice = reply.locator(".review-notice")
    expect(notice.locator(".review-item")).to_have_count(2, timeout=45_000)
    expect(notice).to_contain_text("Remember this?")
    expect(notice).to_contain_text("I work as a nurse.")
    assert not Memory.objects.filter(user=user, content__contains="nurse").exists()
    _shoot(page, "chat-ask")

    # Yes to the first; edit the second, then yes.
    nurse = notice.locator(".review-item", has_text="nurse")
    nurse.get_by_role("button", name="Yes").click()
    expect(notice).to_contain_text("Remembered: I work as a nurse.")
    # One left: no "All" row any more.
    expect(notice.get_by_role("button", name="Yes to all")).to_have_count(0)
    hiking = notice.locator(".review-item", has_text="hiking")
    hiking.get_by_role("button", name="Edit").click()
    editor = notice.locator("textarea")
    expect(editor).to_have_value("I love hiking.")
    editor.fill("I love hiking in the mountains")
    _shoot(page, "chat-edit")
    notice.get_by_role("button", name="Remember").click()
    expect(notice).to_contain_text("Remembered: I love hiking in the mountains")

    # No to the next turn's.
    reply = _say(page, "I have a cat called Miso.")
    notice = reply.locator(".review-notice")
    expect(notice.locator(".review-item")).to_have_count(1, timeout=45_000)
    notice.get_by_role("button", name="No").click()
    expect(reply.locator(".learned")).to_contain_text("Not remembered.")
    _shoot(page, "chat-answered")

    # A change left unanswered in the chat waits on the memory page, shown as what it changes.
    reply = _say(page, "I live in Berlin.")
    expect(reply.locator(".review-item")).to_have_count(1, timeout=45_000)
    expect(reply.locator(".review-item")).to_contain_text("Change this?")
    reply = _say(page, "I play the cello on Sundays.")
    expect(reply.locator(".review-item")).to_have_count(1, timeout=45_000)
    page.goto("/memory/")
    group = page.locator("#group-review")
    expect(group).to_contain_text("Waiting for review")
    # (The quotation marks are the <q> elements' own.)
    expect(group).to_contain_text("Replace I live in Lisbon. with I live in Berlin.")
    expect(group.locator(".pending-item")).to_have_count(2)
    _shoot(page, "page-waiting")

    berlin = group.locator(".pending-item", has_text="Berlin")
    berlin.get_by_role("button", name="Yes").click()
    expect(page.locator("#group-profile")).to_contain_text("I live in Berlin.")
    expect(page.locator("#group-review .pending-item")).to_have_count(1)
    page.locator("#group-review .pending-item").get_by_role("button", name="No").click()
    expect(page.locator("#group-review")).to_have_count(0)
    _shoot(page, "page-answered")

    contents = set(Memory.objects.filter(user=user).values_list("content", flat=True))
    assert contents == {
        "I live in Berlin.", "I work as a nurse.", "I love hiking in the mountains",
    }  # fmt: skip
    assert not PendingMemory.objects.filter(user=user).exists()

    # The account page shows the switch too.
    page.goto("/account/")
    account_switch = page.locator("#review-switch")
    expect(account_switch).to_contain_text("is on: what Mnemo learns waits for your yes.")
    _shoot(page, "account")
    account_switch.get_by_role("button", name="Stop asking").click()
    expect(account_switch).to_contain_text("is off: Mnemo remembers without asking.")
    user.refresh_from_db()
    assert user.ask_before_remembering is False
