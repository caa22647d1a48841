"""Recall you can inspect, and entities on the memory page, in a real browser."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from memory import entities
from memory import services as memory_services
from tests.chat.test_browser import sign_in
from tests.conftest import screenshot
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.browser


def test_recall_details_under_a_reply_and_entities_on_the_memory_page(
    page: Any, user: Any, fake_llm: FakeLLM
) -> None:
    memory_services.remember(user=user, content="My dog Bruno is 3.", kind="fact")
    memory_services.remember(user=user, content="I prefer short answers.", kind="preference")
    entities.upsert_entity(
        user=user, name="Bruno", type="pet", attributes={"species": "dog", "age": "3"}
    )
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")

    fake_llm.reply("Bruno is 3 years old.")
    page.get_by_label("Message").fill("How old is Bruno?")
    page.get_by_label("Message").press("Enter")
    reply = page.locator(".message-assistant").last
    expect(reply).to_contain_text("Bruno is 3 years old.")
    details = reply.locator("details.used-memories")
    expect(details.locator("summary")).to_contain_text(
        re.compile(r"Used 2 memories · recall [\d.]+ ms")
    )
    details.locator("summary").click()
    table = details.locator("table.recall-table")
    expect(table).to_be_visible()
    expect(table).to_contain_text("My dog Bruno is 3.")
    expect(table).to_contain_text("Bruno (pet): age: 3; species: dog")
    expect(table.locator("tr.included")).to_have_count(3)
    screenshot(page, "recall-details")

    page.get_by_role("link", name="What I know about you").click()
    group = page.locator("#group-entities")
    expect(group).to_contain_text("Bruno")
    expect(group).to_contain_text("species:")
    group.get_by_role("button", name="Edit").click()
    page.locator("textarea[name=attributes]").fill("species: dog\nage: 4")
    page.get_by_role("button", name="Save").click()
    expect(group).to_contain_text("4")
    screenshot(page, "entities")
