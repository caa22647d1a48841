"""The memory feature in headless Chromium: learn from a chat (real Celery worker), then
correct, pin, delete, search and export on "What I know about you", at desktop and phone width.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Message
from memory import services
from memory.models import ExtractionRun, Memory
from tests.conftest import screenshot
from tests.factories import PASSWORD
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.browser

SAID = "I live in Lisbon and I love hiking."
REPLY = "Lisbon is a lovely base for hiking: try the trails of Sintra."


def responder(request: dict[str, Any]) -> str | dict[str, Any]:
    """The fake model: proposes the two facts when asked to extract, otherwise chats."""
    schema = (request.get("response_format") or {}).get("schema") or {}
    properties = schema.get("properties", {})
    if "facts" in properties:
        text = request["messages"][-1]["content"]
        if text != SAID:
            return {"facts": []}
        return {
            "facts": [
                {"kind": "profile", "content": "I live in Lisbon"},
                {"kind": "preference", "content": "I love hiking"},
            ]
        }
    if "decisions" in properties:
        return {"decisions": []}
    return REPLY


def sign_in(page: Any, user: Any) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_login").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))


def test_learn_in_chat_then_correct_pin_delete_search_and_export_on_the_memory_page(
    celery_worker: Any, page: Any, user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = responder
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm on Delete
    sign_in(page, user)

    # 1. A chat turn; the worker extracts two memories and the reply says so.
    page.get_by_role("button", name="Start a chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")
    box = page.get_by_label("Message")
    box.fill(SAID)
    box.press("Enter")
    reply = page.locator(".message-assistant").last
    expect(reply).to_contain_text("trails of Sintra")
    learned = reply.locator(".learned")
    expect(learned).to_contain_text("Remembered: I live in Lisbon.", timeout=45_000)
    expect(learned).to_contain_text("Remembered: I love hiking.")
    expect(learned.get_by_role("button", name="Undo")).to_have_count(2)
    message = Message.objects.get(user=user, role=Message.Role.USER, content=SAID)
    assert ExtractionRun.objects.get(source_message_id=message.pk).added == 2
    lisbon = Memory.objects.get(user=user, content="I live in Lisbon.")
    hiking = Memory.objects.get(user=user, content="I love hiking.")
    assert lisbon.source_message_id == message.pk and lisbon.kind == "profile"

    # 2. The memory page shows both, grouped, with where they came from.
    page.get_by_role("link", name="What I know about you").click()
    expect(page).to_have_url(re.compile(r"/memory/$"))
    expect(page.get_by_role("heading", name="What I know about you")).to_be_visible()
    item = page.locator(f"#memory-{lisbon.pk}")
    expect(page.locator("#group-profile")).to_contain_text("I live in Lisbon.")
    expect(page.locator("#group-preference")).to_contain_text("I love hiking.")
    provenance = item.get_by_role("link", name="your message")
    expect(provenance).to_have_attribute(
        "href", f"/chat/c/{message.conversation_id}/#message-{message.pk}"
    )
    # Set on this document: a full page load would lose it.
    page.evaluate("window.mnemoSamePage = true")

    # 3. Correct it inline.
    item.get_by_role("button", name="Edit").click()
    editor = item.get_by_label("Memory text")
    expect(editor).to_have_value("I live in Lisbon.")
    editor.fill("I live in Porto")
    item.get_by_role("button", name="Save").click()
    expect(item.locator(".memory-text")).to_have_text("I live in Porto")
    assert page.evaluate("window.mnemoSamePage") is True
    lisbon.refresh_from_db()
    assert lisbon.content == "I live in Porto"

    # 4. Pin it: it never expires.
    item.get_by_role("button", name="Pin").click()
    expect(item.locator(".memory-text svg.icon-pin")).to_have_attribute("aria-label", "Pinned")
    expect(item).to_contain_text("never expires")
    expect(item.get_by_role("button", name="Unpin")).to_be_visible()
    lisbon.refresh_from_db()
    assert lisbon.pinned is True

    # 5. Delete the hiking memory (after the confirmation dialog).
    page.locator(f"#memory-{hiking.pk}").get_by_role("button", name="Delete").click()
    expect(page.locator(f"#memory-{hiking.pk}")).to_have_count(0)
    expect(page.locator("#group-preference .count")).to_have_text("0")
    assert not Memory.objects.filter(pk=hiking.pk).exists()

    # 6. A blank memory is refused with a message next to the form, as often as it is tried;
    # what was typed stays, and the message goes once a memory is added.
    new_memory = page.locator("#new-memory")
    add = page.get_by_role("button", name="Add", exact=True)
    for _attempt in range(2):
        new_memory.fill("   ")
        add.click()
        expect(page.locator("#add-error")).to_have_text("A memory cannot be empty.")
        expect(new_memory).to_have_value("   ")
    assert Memory.objects.filter(user=user).count() == 1
    page.get_by_label("Kind", exact=True).first.select_option("preference")
    new_memory.fill("I prefer metric units")
    add.click()
    expect(page.locator("#group-preference")).to_contain_text("I prefer metric units")
    expect(page.locator("#add-error")).to_be_empty()
    expect(new_memory).to_have_value("")
    metric = Memory.objects.get(user=user, content="I prefer metric units")
    assert metric.kind == "preference"

    # 7. Search by meaning.
    page.get_by_label("Search your memories").fill("where do I live")
    results = page.locator("#memory-list")
    expect(results).to_contain_text("1 result for “where do I live”")
    expect(results.locator(".memory-text")).to_have_count(1)
    expect(results.locator(".memory-text")).to_contain_text("I live in Porto")
    expect(results.locator(".memory-text svg.icon-pin")).to_have_count(1)
    assert page.evaluate("window.mnemoSamePage") is True

    # 8. Export downloads everything as JSON, matching what the page shows.
    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("Export everything")).click()
    download = download_info.value
    assert download.suggested_filename.endswith(".json")
    exported = json.loads(Path(download.path()).read_text())
    assert [(m["id"], m["content"], m["pinned"]) for m in exported["memories"]] == [
        (lisbon.pk, "I live in Porto", True),
        (metric.pk, "I prefer metric units", False),
    ]
    assert exported["memories"][0]["source"]["message_id"] == message.pk
    forgotten = {f["memory_id"]: f["history"] for f in exported["forgotten_memory_history"]}
    assert [e["action"] for e in forgotten[hiking.pk]] == ["added", "deleted"]
    assert [m["content"] for c in exported["conversations"] for m in c["messages"]] == [
        SAID,
        REPLY,
    ]


def _fill_for_screenshots(user: Any) -> None:
    conversation = Conversation.objects.create(user=user, title="Weekend in Sintra")
    message = Message.objects.create(
        user=user,
        conversation=conversation,
        role=Message.Role.USER,
        content="I live in Lisbon and I love hiking with my dog Rex.",
    )
    for kind, content in [
        ("profile", "I live in Lisbon"),
        ("profile", "I work as a landscape architect"),
        ("preference", "I love hiking"),
        ("preference", "I prefer short answers with metric units"),
        ("fact", "I have a dog named Rex who is afraid of thunderstorms and loves the beach"),
        ("task", "I am planning a three-day walk along the Rota Vicentina in October"),
        ("fact", "My trail notes are at https://hikingwithrex.example.com/trails/rotavicentina"),
    ]:
        services.remember(
            user=user,
            content=content,
            kind=kind,
            source_message_id=message.pk,
            source_conversation_id=conversation.pk,
            source_excerpt=message.content,
        )
    pinned = Memory.objects.get(user=user, content="I live in Lisbon")
    services.set_pinned(user=user, memory_id=pinned.pk, pinned=True)
    services.save_summary(
        user=user,
        conversation_id=conversation.pk,
        conversation_title=conversation.title,
        content="I planned a weekend of hiking in Sintra with my dog and asked about trails.",
        last_message_id=message.pk,
        message_count=6,
    )


def test_the_memory_page_fits_desktop_and_phone_widths(page: Any, user: Any) -> None:
    _fill_for_screenshots(user)
    sign_in(page, user)

    page.goto("/memory/")
    expect(page.locator("#group-task")).to_contain_text("Rota Vicentina")
    page.locator("#group-fact .memory-item").first.get_by_role("button", name="History").click()
    expect(page.locator("#group-fact .history-list")).to_contain_text("Added")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "memory-desktop")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/memory/")
    expect(page.locator("#group-task")).to_contain_text("Rota Vicentina")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for selector in ("#new-memory", "#memory-search", "#forget-confirm"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
    screenshot(page, "memory-phone")


def test_a_refused_edit_keeps_the_corrected_text_and_says_why(page: Any, user: Any) -> None:
    memory = services.remember(user=user, content="I live in Lisbon", kind="profile")
    sign_in(page, user)
    page.goto("/memory/")
    item = page.locator(f"#memory-{memory.pk}")
    item.get_by_role("button", name="Edit").click()
    editor = item.get_by_label("Memory text")
    editor.fill("I live in Porto now")
    # Deleted meanwhile (another tab, retention): the save is refused with a 404.
    services.forget(user=user, memory_id=memory.pk)
    item.get_by_role("button", name="Save").click()
    expect(item.get_by_role("alert")).not_to_be_empty()
    expect(item.get_by_role("alert")).to_be_visible()
    expect(editor).to_have_value("I live in Porto now")
    screenshot(page, "memory-edit-refused")


def test_on_a_phone_the_per_memory_buttons_are_finger_sized(page: Any, user: Any) -> None:
    # They were 26 px tall (the chat's Undo 22 px): easy to miss, or to hit Delete instead.
    services.remember(user=user, content="I live in Oslo", kind=Memory.Kind.PROFILE)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, user)
    page.goto("/memory/")
    item = page.locator(".memory-item", has_text="I live in Oslo")
    for name in ("Edit", "Pin", "Keep local", "History", "Delete"):
        box = item.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["height"] >= 40, (name, box)
    checkbox = page.locator("#local-only input[type=checkbox]").first.bounding_box()
    assert checkbox is not None and checkbox["height"] >= 18
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "memory-phone-targets")

    page.set_viewport_size({"width": 1280, "height": 800})  # a mouse keeps the compact row
    box = item.get_by_role("button", name="Edit").bounding_box()
    assert box is not None and box["height"] < 32


def test_an_add_error_goes_once_the_text_is_edited_not_before(page: Any, user: Any) -> None:
    # "A memory cannot be empty." used to stay under the Add box through searches, the memory
    # switch and everything else, until the next Add.
    sign_in(page, user)
    page.goto("/memory/")
    page.wait_for_load_state("domcontentloaded")
    page.evaluate("document.querySelector('#new-memory').removeAttribute('required')")
    page.locator("#new-memory").fill("   ")
    page.get_by_role("button", name="Add").click()
    error = page.locator("#add-error")
    expect(error).to_have_text("A memory cannot be empty.")
    page.locator("#memory-search").fill("where do I live")  # another form: the error stays
    expect(page.locator("#memory-list")).to_contain_text("for “where do I live”")
    expect(error).to_have_text("A memory cannot be empty.")

    page.locator("#new-memory").press_sequentially("I like tea")

    expect(error).to_be_empty()
    expect(error).to_be_hidden()
    assert page.locator("#new-memory").input_value().strip() == "I like tea"  # nothing lost
