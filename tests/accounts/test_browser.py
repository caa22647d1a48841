from __future__ import annotations

import itertools
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from tests.conftest import screenshot
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.browser


def test_a_visitor_signs_up_logs_out_and_logs_back_in(page: Any) -> None:
    page.goto("/")
    expect(page).to_have_url(r"/accounts/login/")
    screenshot(page, "login")
    page.get_by_role("link", name="Sign up").first.click()
    expect(page).to_have_url(r"/accounts/signup/")

    page.locator("#id_email").fill("grace@example.com")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    screenshot(page, "signup")
    page.get_by_role("button", name="Sign Up").click()

    expect(page).to_have_url(r"/chat/")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("What I know about you")
    assert User.objects.filter(email="grace@example.com").exists()
    screenshot(page, "after-signup")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(r"/accounts/login/")

    page.locator("#id_login").fill("grace@example.com")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(r"/chat/")


def test_the_login_page_works_at_phone_width(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto("/accounts/login/")
    button = page.get_by_role("button", name="Sign In")
    expect(button).to_be_visible()
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    screenshot(page, "login-phone")


def test_the_account_and_erasure_pages_count_in_words_at_both_widths(page: Any, user: User) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_login").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(r"/chat/")

    page.goto("/account/")
    expect(page.locator(".danger-zone")).to_contain_text("0 conversations")
    expect(page.get_by_role("link", name="Export my data").locator("svg.icon")).to_have_count(1)
    screenshot(page, "account-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/account/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "account-phone")

    page.goto("/account/erase")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Erase everything").click()
    erased = page.locator(".erase-list")
    expect(erased).to_contain_text("Your account and sign-in details")
    expect(erased).to_contain_text("signed out everywhere")
    # What of the person's went, in words: no internal rows, no zero counts.
    for wrong in ("cache key", "session", "extraction run", "0 "):
        expect(erased).not_to_contain_text(wrong)
    screenshot(page, "erased-phone")


def _gap(upper: dict[str, float], lower: dict[str, float]) -> float:
    return lower["y"] - (upper["y"] + upper["height"])


@pytest.mark.parametrize("width", [1280, 390])
def test_the_account_page_cards_stand_apart_and_a_long_email_stays_inside(
    page: Any, width: int
) -> None:
    # First contact on a phone: the address ran past the card's edge, the cards touched and
    # the token name box sat on its button.
    person = UserFactory(email="ada.lovelace-analytical-engine-1843@example.com")
    page.set_viewport_size({"width": width, "height": 844})
    page.goto("/accounts/login/")
    page.locator("#id_login").fill(person.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page).to_have_url(r"/chat/")
    page.goto("/account/")

    cards = page.locator("main .card")
    boxes = [cards.nth(i).bounding_box() for i in range(cards.count())]
    assert len(boxes) >= 4 and all(boxes)
    for upper, lower in itertools.pairwise(boxes):
        assert _gap(upper, lower) >= 12, (upper, lower)
    email = page.locator(".facts dd").first
    expect(email).to_have_text(person.email)
    first = boxes[0]
    inside = email.evaluate(
        "(dd) => { const r = document.createRange(); r.selectNodeContents(dd);"
        " const b = r.getBoundingClientRect(); return b.right; }"
    )
    assert inside <= first["x"] + first["width"]
    heading = page.get_by_role("heading", name="Which models see what").bounding_box()
    local_card = page.locator("#local-only").bounding_box()
    assert heading and local_card and heading["y"] - local_card["y"] <= 40  # no empty band
    name = page.locator("#token-name").bounding_box()
    create = page.get_by_role("button", name="Create a token").bounding_box()
    assert name and create
    assert create["x"] >= name["x"] + name["width"] + 4 or _gap(name, create) >= 4
    screenshot(page, f"account-cards-{width}")
