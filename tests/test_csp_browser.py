"""Every page passes the Content-Security-Policy in a real browser: no violation, no CSP error."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import Conversation, Message
from memory.models import Memory
from tests.conftest import screenshot
from tests.factories import PASSWORD, UserFactory
from tests.memory.test_browser import _fill_for_screenshots

pytestmark = pytest.mark.browser

# Registered before any page script runs (Playwright injects it outside the page's policy).
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(
    e.violatedDirective + " " + (e.blockedURI || "inline") + " " + e.sourceFile + ":" + e.lineNumber
  );
});
"""


class CspWatcher:
    """Collects violations per page from the DOM event and from the console."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        self.violations: dict[str, list[str]] = {}
        self.headers: dict[str, str] = {}
        self.events: dict[str, int] = {}
        page.add_init_script(LISTEN)
        page.on("console", self._on_console)

    def _on_console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def visit(self, path: str, *, act: Any = None) -> None:
        self.console.clear()
        response = self.page.goto(path)
        assert response is not None and response.status < 400, (path, response and response.status)
        self.headers[path] = response.headers.get("content-security-policy", "")
        self.page.wait_for_load_state("networkidle")
        failed = []
        if act is not None:
            # A page that CSP breaks fails here; recorded with its violations, not raised,
            # so one run shows every page's state.
            try:
                act(self.page)
                self.page.wait_for_load_state("networkidle")
            except AssertionError as exc:
                failed.append(f"page did not work: {exc}")
            except Exception as exc:  # Playwright's timeout
                failed.append(f"page did not work: {type(exc).__name__}")
        self.record(path, failed)

    def record(self, path: str, failed: list[str] | None = None) -> None:
        # The DOM event and the console both report each violation; keep both (the console
        # also reports what fires no event, e.g. a blocked eval in some builds).
        events = self.page.evaluate("window.__csp")
        self.violations[path] = events + [f"console: {t[:160]}" for t in self.console]
        self.violations[path] += failed or []
        self.events[path] = len(events)


def _seed_chat(user: Any) -> Conversation:
    conversation = Conversation.objects.create(user=user, title="Trip planning")
    Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.USER, content="Plan a hike"
    )
    reply = Message.objects.create(
        user=user,
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="Here is a **plan**:\n\n- day one\n- day two\n\n`boots` matter.",
    )
    reply.memories_used.set(Memory.objects.filter(user=user)[:2])
    Conversation.objects.create(user=user, title="Incognito chat", incognito=True)
    return conversation


def test_every_page_passes_the_content_security_policy(page: Any, user: Any) -> None:
    _fill_for_screenshots(user)
    conversation = _seed_chat(user)
    memory = Memory.objects.filter(user=user).first()
    assert memory is not None
    staff: Any = UserFactory(is_staff=True, is_superuser=True)
    watcher = CspWatcher(page)

    # Anonymous pages (allauth).
    for path in ("/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"):
        watcher.visit(path)

    page.goto("/accounts/login/")
    page.locator("#id_login").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(r"/chat/")

    def open_menu_and_history(page: Any) -> None:
        page.locator(".chat-menu summary").click()
        page.locator(".used-memories summary").first.click()

    def use_memory_page(page: Any) -> None:
        # hx-on handlers and htmx swaps run here: the add form, history, an edit form.
        page.locator("#new-memory").fill("I drink my coffee black")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("#memory-list")).to_contain_text("I drink my coffee black")
        page.locator(".memory-item").first.get_by_role("button", name="History").click()
        page.locator(".memory-item").first.get_by_role("button", name="Edit").click()

    watcher.visit("/chat/")
    watcher.visit(f"/chat/c/{conversation.pk}/", act=open_menu_and_history)
    watcher.visit("/memory/", act=use_memory_page)
    watcher.visit("/memory/?q=hiking")
    watcher.visit("/account/")
    watcher.visit("/account/erase")
    watcher.visit("/accounts/password/change/")
    watcher.visit("/accounts/email/")

    def read_api_docs(page: Any) -> None:
        page.wait_for_selector(".opblock", timeout=15_000)  # Swagger UI rendered the schema
        screenshot(page, "api-docs")

    watcher.visit("/api/docs/", act=read_api_docs)

    # The erased page is the answer to the erase form.
    page.goto("/account/erase")
    page.locator("#id_password").fill(PASSWORD)
    watcher.console.clear()
    page.get_by_role("button", name="Erase everything").click()
    expect(page.get_by_role("heading", name="Your account is erased")).to_be_visible()
    page.wait_for_load_state("networkidle")
    watcher.record("/account/erase (erased)")

    # The admin, as staff.
    page.goto("/admin/login/")
    page.locator("#id_username").fill(staff.email)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("input[type=submit]").click()
    expect(page).to_have_url(r"/admin/")
    for path in (
        "/admin/",
        "/admin/insights/",
        "/admin/memory/retentionpolicy/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{staff.pk}/change/",
    ):
        watcher.visit(path)

    for path, header in watcher.headers.items():
        assert "script-src 'self'" in header, (path, header)
        assert "unsafe-inline" not in header and "unsafe-eval" not in header, (path, header)
    print("CSP violation events per page:", watcher.events)
    for path, found in watcher.violations.items():
        for line in found:
            print("  ", path, line)
    assert {p: v for p, v in watcher.violations.items() if v} == {}
