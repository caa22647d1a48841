"""Memory on the embedded default, in headless Chromium: tell it things, change one, ask later.

The background model is the fake LLM imitating SmolLM2-135M (it echoes its few-shot example
and proposes nothing of the person's), and the real Celery worker treats it as the small model
it imitates; what is learned comes from the deterministic extractor. The chat model is a toy
reader of the prompt: it answers "Where do I live?" with the city the prompt it received says
the person lives in, and "I don't know" when the prompt says none. It is not a scripted
answer: it reads whatever the real prompt assembly put in the prompt.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Message
from memory.models import Entity, ExtractionRun, Memory
from tests.conftest import screenshot
from tests.factories import PASSWORD
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.browser

TOLD = [
    "Hi! My name is Marta.",
    "I live in Lisbon.",
    "I have a dog called Bruno.",
    "I'm vegetarian.",
    "Big news: I moved to Berlin last week.",
]


def toy_reader(request: dict[str, Any]) -> str | dict[str, Any]:
    schema = (request.get("response_format") or {}).get("schema") or {}
    properties = schema.get("properties", {})
    if "facts" in properties:
        # What SmolLM2 answered 22 times in 24: its few-shot example, back.
        return {
            "facts": [
                {"kind": "profile", "content": "My name is Ana"},
                {"kind": "profile", "content": "I live in Porto"},
            ],
            "entities": [],
        }
    if "decisions" in properties:
        return {"decisions": []}
    if not request.get("stream"):
        return "Getting to know me"  # a title
    prompt = "\n".join(m["content"] for m in request["messages"][:-1])
    question = request["messages"][-1]["content"].lower()
    if "where do i live" in question:
        city = re.search(r"\b(?:You|I) live in ([A-Z][\w-]*)", prompt)
        return f"You live in {city.group(1)}." if city else "I don't know where you live."
    return "Nice, noted."


@pytest.fixture
def worker_env(worker_env: dict[str, str]) -> dict[str, str]:
    # The worker's background model goes by the embedded default's name.
    return {**worker_env, "LLM_BACKGROUND_MODEL": "smollm2-135m-instruct"}


def sign_in(page: Any, user: Any) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_login").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))


def say(page: Any, text: str) -> Any:
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")
    expect(page.locator(".message-user").last).to_contain_text(text)
    reply = page.locator(".message-assistant").last
    expect(reply).to_have_class(re.compile(r"status-complete"), timeout=15_000)
    return reply


def wait_for_runs(user: Any, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ExtractionRun.objects.filter(user=user).count() >= count:
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not extract every message in time")


def test_a_moved_city_is_the_one_a_new_chat_answers_with(
    celery_worker: Any, page: Any, user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.LLM_CHAT_MODEL = "smollm2-135m-instruct"  # the small layout, by its name
    fake_llm.responder = toy_reader
    sign_in(page, user)

    # 1. Tell it my name, city, dog and diet; then that I moved.
    page.get_by_role("button", name="Start a chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")
    for text in TOLD:
        say(page, text)
    wait_for_runs(user, len(TOLD))
    live = set(Memory.objects.filter(user=user).values_list("content", flat=True))
    assert live == {
        "My name is Marta.",
        "I live in Berlin.",
        "I have a dog called Bruno.",
        "I am vegetarian.",
    }
    assert Entity.objects.filter(user=user, name="Bruno", type="pet").exists()

    # 2. A new chat: where do I live?
    page.get_by_role("button", name="New chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")
    reply = say(page, "Where do I live?")
    expect(reply).to_contain_text("You live in Berlin.")
    screenshot(page, "grounding-new-chat")
    prompt = [r for r in fake_llm.chat_requests if r.get("stream")][-1]["messages"][0]["content"]
    assert "- You live in Berlin." in prompt.splitlines() and "Lisbon" not in prompt
    asked = Message.objects.get(user=user, role="assistant", content="You live in Berlin.")
    berlin = Memory.objects.get(user=user, content="I live in Berlin.")
    assert berlin in asked.memories_used.all()

    # 3. The memory page: Berlin is what I know; Lisbon only in its history.
    page.goto("/memory/")
    profile = page.locator("#group-profile")
    expect(profile).to_contain_text("I live in Berlin.")
    expect(profile).not_to_contain_text("Lisbon")
    item = page.locator(f"#memory-{berlin.pk}")
    item.get_by_role("button", name="History").click()
    expect(item.locator(".history-list")).to_contain_text("I live in Lisbon.")
    expect(page.locator("body")).to_contain_text("Bruno")
    outside_history = page.evaluate(
        """() => {
            const copy = document.body.cloneNode(true);
            copy.querySelectorAll(".history-list").forEach((list) => list.remove());
            return copy.textContent;
        }"""
    )
    assert "Berlin" in outside_history and "Lisbon" not in outside_history
    screenshot(page, "grounding-memory-history")
