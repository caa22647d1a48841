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


# --- First contact: refusals keep the text, the chat is an app, icons render everywhere ---

EMOJI = "\U0001f576\U0001f4cc\u25a0\u21bb\u2913\u22ef"  # what the pages used to show as text


def _long_conversation(user: Any, turns: int = 25) -> Conversation:
    conversation = Conversation.objects.create(user=user, title="A long talk about hiking")
    for i in range(turns):
        Message.objects.create(
            user=user,
            conversation=conversation,
            role=Message.Role.USER,
            content=f"Question {i}: what should I pack for day {i} of the walk?",
        )
        Message.objects.create(
            user=user,
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=f"For day {i}, pack **water**, a map and snacks.\n\n- boots\n- hat\n- socks "
            + "and layers " * (i % 4 * 5),
        )
    Conversation.objects.create(user=user, title="Private thoughts", incognito=True)
    return conversation


def _pane_state(page: Any) -> dict[str, float]:
    return page.evaluate(
        """() => {
        const m = document.getElementById("messages");
        return {scrollTop: m.scrollTop, scrollHeight: m.scrollHeight, clientHeight: m.clientHeight,
                pageScroll: document.scrollingElement.scrollHeight - window.innerHeight};
    }"""
    )


def _at_bottom(state: dict[str, float]) -> bool:
    return state["scrollHeight"] - state["scrollTop"] - state["clientHeight"] <= 2


def test_a_refused_send_keeps_the_text_and_shows_why(
    page: Any, user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_load_state("domcontentloaded")
    box = page.get_by_label("Message")
    error = page.locator("#composer-error")

    # 1. Too long (413): the message says so, every character typed is still in the box.
    too_long = "I typed this carefully. " * 337 + "The end"  # 8,095 characters
    too_long += "x" * (8100 - len(too_long))
    box.fill(too_long)
    box.press("Enter")
    expect(error).to_have_text("That message is 8,100 characters long; the limit is 8,000.")
    expect(error).to_be_visible()
    assert box.input_value() == too_long
    assert not Message.objects.filter(user=user).exists()
    # The message sits next to the box: just above it, inside the composer.
    error_box, text_box = error.bounding_box(), box.bounding_box()
    assert error_box is not None and text_box is not None
    assert 0 <= text_box["y"] - (error_box["y"] + error_box["height"]) <= 16
    screenshot(page, "chat-refused-desktop")

    # 2. A shorter message goes through: the box empties and the message goes away.
    fake_llm.reply("Thanks.")
    box.fill("A short one")
    box.press("Enter")
    expect(page.locator(".message-assistant").last).to_contain_text("Thanks.")
    expect(box).to_have_value("")
    expect(error).to_be_empty()

    # 3. Rate limit (429): same path, the text stays.
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    box.fill("One more thing")
    page.get_by_role("button", name="Send").click()
    expect(error).to_contain_text("too quickly")
    assert box.input_value() == "One more thing"
    assert Message.objects.filter(user=user, role="user").count() == 1

    # 4. A refusal the view did not word (here a 404: the chat was deleted meanwhile) gets
    # a message from its status, and the text still stays; and so does a network failure.
    conversation = Conversation.objects.get(user=user)
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    conversation.delete()
    box.fill("Are you still there?")
    box.press("Enter")
    expect(error).to_contain_text("no longer there")
    assert box.input_value() == "Are you still there?"
    page.context.set_offline(True)
    box.press("Enter")
    expect(error).to_contain_text("Could not reach the server")
    assert box.input_value() == "Are you still there?"
    page.context.set_offline(False)


def test_a_refused_rename_shows_its_message_in_the_menu(page: Any, user: Any) -> None:
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_load_state("domcontentloaded")
    page.locator(".chat-menu summary").click()
    title = page.get_by_label("Rename")
    title.fill("   ")
    page.locator(".rename-form").get_by_role("button", name="Save").click()
    expect(page.locator("#rename-error")).to_have_text("A title cannot be empty.")
    assert title.input_value() == "   "
    title.fill("Trip plans")
    page.locator(".rename-form").get_by_role("button", name="Save").click()
    expect(page.locator("#title-text")).to_have_text("Trip plans")


def test_a_refused_send_at_phone_width_shows_its_message(page: Any, user: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_load_state("domcontentloaded")
    box = page.get_by_label("Message")
    box.fill("y" * 8100)
    box.press("Enter")
    error = page.locator("#composer-error")
    expect(error).to_contain_text("the limit is 8,000")
    assert len(box.input_value()) == 8100
    error_box = error.bounding_box()
    assert error_box is not None and error_box["y"] + error_box["height"] <= 844
    screenshot(page, "chat-refused-phone")

    # The unsent text also survives a reload of the tab.
    page.reload()
    page.wait_for_load_state("load")
    assert len(page.get_by_label("Message").input_value()) == 8100


def test_the_chat_is_an_app_only_the_message_pane_scrolls(
    page: Any, user: Any, fake_llm: FakeLLM
) -> None:
    conversation = _long_conversation(user)
    sign_in(page, user)
    screenshot(page, "chat-empty-desktop")
    page.goto(f"/chat/c/{conversation.pk}/")
    page.wait_for_load_state("load")

    # It opens at the newest message; the page itself does not scroll, the pane does.
    state = _pane_state(page)
    assert state["pageScroll"] <= 0
    assert state["scrollHeight"] > state["clientHeight"] * 2
    expect(page.locator(".message-assistant").last).to_be_in_viewport()
    assert _at_bottom(_pane_state(page))
    screenshot(page, "chat-long-desktop")

    # Scrolling the pane leaves the top bar, the chat header, the sidebar and the composer
    # where they were.
    parts = (".topbar", ".chat-header", "#chat-sidebar", "#composer")
    before = {part: page.locator(part).bounding_box() for part in parts}
    page.locator("#messages").hover()
    page.mouse.wheel(0, -100_000)
    page.wait_for_function("() => document.getElementById('messages').scrollTop < 100")
    after = {part: page.locator(part).bounding_box() for part in parts}
    assert before == after
    composer = after["#composer"]
    assert composer is not None and composer["y"] + composer["height"] <= 800

    # Scrolled up, a streaming reply does not pull the pane down...
    tokens = [f"word{i} " for i in range(30)]
    fake_llm.reply("".join(tokens), tokens=tokens, delay=0.05)
    page.evaluate(
        """() => { const form = document.getElementById("composer");
                   form.querySelector("textarea").value = "Keep going";
                   htmx.trigger(form, "submit"); }"""
    )
    # (sending scrolls to the newest message, as a chat app does; scroll up again)
    expect(page.locator(".message-user").last).to_contain_text("Keep going")
    page.locator("#messages").hover()
    page.mouse.wheel(0, -100_000)
    page.wait_for_function("() => document.getElementById('messages').scrollTop < 100")
    expect(page.locator(".message-assistant").last).to_have_class(
        re.compile("status-complete"), timeout=10_000
    )
    assert _pane_state(page)["scrollTop"] < 100
    # ...but at the bottom it follows the tokens.
    fake_llm.reply("".join(tokens), tokens=tokens, delay=0.05)
    page.get_by_label("Message").fill("And again")
    page.get_by_label("Message").press("Enter")
    expect(page.locator(".message-assistant").last).to_have_class(
        re.compile("status-complete"), timeout=10_000
    )
    page.wait_for_timeout(200)  # the final swap settles (20 ms in htmx)
    assert _at_bottom(_pane_state(page))

    # Icons are inline SVG with labels; no emoji left for a missing font to box.
    incognito = page.locator("#conversation-list .badge svg.icon-incognito")
    expect(incognito).to_have_attribute("aria-label", "Incognito")
    assert not any(ch in page.locator("body").inner_text() for ch in EMOJI)
    expect(page.locator(".chat-menu summary svg.icon")).to_have_count(1)


def test_on_a_phone_the_chat_opens_at_the_newest_message_with_the_list_in_a_drawer(
    page: Any, user: Any
) -> None:
    conversation = _long_conversation(user)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, user)
    screenshot(page, "chat-empty-phone")
    page.goto(f"/chat/c/{conversation.pk}/")
    page.wait_for_load_state("load")

    # The newest message is on screen; the list is not.
    newest = page.locator(".message-assistant").last
    expect(newest).to_be_in_viewport()
    assert _at_bottom(_pane_state(page))
    assert _pane_state(page)["pageScroll"] <= 0
    sidebar = page.locator("#chat-sidebar")
    expect(sidebar).not_to_be_in_viewport()
    send = page.get_by_role("button", name="Send").bounding_box()
    assert send is not None and send["x"] + send["width"] <= 390 and send["y"] <= 844
    screenshot(page, "chat-long-phone")

    # The list is behind a button: it opens over the chat, and closes again.
    toggle = page.locator(".chat-header .drawer-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(sidebar).to_be_in_viewport(ratio=1)  # once it has slid in
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(sidebar.get_by_role("link", name="Private thoughts")).to_be_visible()
    box = sidebar.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    screenshot(page, "chat-drawer-phone")
    page.locator("#drawer-backdrop").click(position={"x": 370, "y": 400})
    expect(sidebar).not_to_be_in_viewport()
    toggle.click()
    page.keyboard.press("Escape")
    expect(sidebar).not_to_be_in_viewport()

    # From the drawer to another chat.
    toggle.click()
    sidebar.get_by_role("link", name="Private thoughts").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    expect(page.locator(".chat-title")).to_contain_text("Private thoughts")
    expect(page.locator("#chat-sidebar")).not_to_be_in_viewport()


def test_a_slow_reply_says_it_is_waiting_for_the_model(
    page: Any, user: Any, fake_llm: FakeLLM
) -> None:
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    page.wait_for_load_state("domcontentloaded")
    # Shorter thresholds than the real ones (4 s and 20 s), so the test waits less.
    page.evaluate(
        """() => { const m = document.getElementById("messages");
                   m.dataset.waitMs = "300"; m.dataset.stillWaitMs = "1200"; }"""
    )
    # The model's first words come after 2.5 s (the first chunk only announces the role).
    fake_llm.reply("Sorry for the wait.", tokens=["", "Sorry for the wait."], delay=2.5)
    page.get_by_label("Message").fill("Hello?")
    page.get_by_label("Message").press("Enter")
    reply = page.locator(".message-assistant").last
    expect(reply.locator(".wait-note")).to_have_text("Waiting for the model…")
    expect(reply.locator(".wait-note")).to_have_text("Still waiting — the local model may be busy.")
    expect(reply.get_by_role("button", name="Stop")).to_be_visible()
    screenshot(page, "chat-waiting")
    expect(reply).to_contain_text("Sorry for the wait.", timeout=10_000)
    expect(reply.locator(".wait-note")).to_have_count(0)


# --- A reply written by another connection (reloaded mid-stream, or open in two tabs) ---


def _turn_being_written(user: Any, status: str) -> tuple[Conversation, Message]:
    conversation = Conversation.objects.create(user=user, title="Reloaded mid-reply")
    Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.USER, content="Tell me a story"
    )
    reply = Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.ASSISTANT, status=status
    )
    return conversation, reply


def test_a_reply_streaming_elsewhere_settles_on_the_page_without_a_reload(
    page: Any, user: Any
) -> None:
    # Reloading the tab mid-stream renders the reply while the old connection still has it
    # (STREAMING). It used to show "typing" and a dead Stop button forever.
    conversation, reply = _turn_being_written(user, Message.Status.STREAMING)
    sign_in(page, user)
    page.goto(f"/chat/c/{conversation.pk}/")
    page.wait_for_load_state("domcontentloaded")
    page.evaluate("() => { window.sameDocument = true; }")
    article = page.locator(f"#message-{reply.pk}")
    expect(article.locator(".typing")).to_be_visible()

    # The old connection ends: it keeps what came and marks the reply stopped.
    Message.objects.filter(pk=reply.pk).update(
        status=Message.Status.STOPPED, content="Once upon a time"
    )

    expect(article).to_have_class(re.compile(r"status-stopped"))
    expect(article).to_contain_text("Once upon a time")
    expect(article.get_by_role("button", name="Regenerate")).to_be_visible()
    expect(article.locator(".typing")).to_have_count(0)
    assert page.evaluate("() => window.sameDocument") is True  # no reload was needed


def test_a_reply_another_connection_took_first_is_shown_not_failed(page: Any, user: Any) -> None:
    # The page rendered the reply as PENDING, but the old connection claimed it before this
    # page's stream request arrived: that request gets a 409, which used to show
    # "This reply is not waiting to be generated." as a failure.
    conversation, reply = _turn_being_written(user, Message.Status.PENDING)

    def taken_first(route: Any) -> None:
        Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING)
        route.continue_()

    sign_in(page, user)
    page.route(f"**/chat/m/{reply.pk}/stream", taken_first)
    page.goto(f"/chat/c/{conversation.pk}/")
    page.wait_for_load_state("domcontentloaded")
    article = page.locator(f"#message-{reply.pk}")
    expect(article.locator(".typing")).to_be_visible()

    Message.objects.filter(pk=reply.pk).update(
        status=Message.Status.COMPLETE, content="The whole **story**."
    )

    expect(article).to_have_class(re.compile(r"status-complete"))
    expect(article.locator("strong")).to_have_text("story")
    expect(page.get_by_text("This reply is not waiting to be generated.")).to_have_count(0)
    expect(article.get_by_role("alert")).to_have_count(0)


def test_a_cut_short_reply_says_so_and_continue_goes_on_in_the_browser(
    page: Any, user: Any, fake_llm: FakeLLM
) -> None:
    sign_in(page, user)
    page.get_by_role("button", name="Start a chat").click()
    expect(page).to_have_url(re.compile(r"/chat/c/\d+/$"))
    page.wait_for_load_state("domcontentloaded")

    # The token limit ends the reply mid-sentence: the page says so, with Continue.
    fake_llm.reply("Luna has a brother named Max. They", finish_reason="length")
    box = page.get_by_label("Message")
    box.fill("Tell me a story about Luna")
    box.press("Enter")
    reply = page.locator(".message-assistant").last
    expect(reply).to_contain_text("Luna has a brother named Max. They")
    expect(reply.locator(".cut-note")).to_have_text("Cut short")
    expect(reply).to_have_class(re.compile(r"cut-short"))
    screenshot(page, "chat-cut-short")

    # Continue streams the rest after the text already there, and the note goes.
    fake_llm.reply("went to the sea together.", tokens=["went", " to the sea", " together."])
    reply.get_by_role("button", name="Continue").click()
    expect(reply := page.locator(".message-assistant").last).to_contain_text(
        "Luna has a brother named Max. They went to the sea together."
    )
    expect(reply).to_have_class(re.compile(r"status-complete"))
    expect(reply.locator(".cut-note")).to_have_count(0)
    saved = Message.objects.filter(role="assistant").order_by("-id").first()
    assert saved is not None
    assert saved.content == "Luna has a brother named Max. They went to the sea together."
    assert saved.finish_reason == "stop"
