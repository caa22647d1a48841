from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_redis import get_redis_connection

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_signup_creates_a_user_and_logs_them_in(client: Client) -> None:
    response = client.post(
        reverse("account_signup"),
        {"email": "Ada@Example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    user = User.objects.get()
    assert user.email == "ada@example.com"
    assert user.memory_enabled is True
    page = client.get(reverse("chat:index"))
    assert page.status_code == 200
    assert page.wsgi_request.user == user


def test_signup_rejects_a_taken_email_with_a_message(client: Client, user: Any) -> None:
    response = client.post(
        reverse("account_signup"),
        {"email": user.email, "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200
    assert "already registered" in response.content.decode()
    assert User.objects.count() == 1


def test_signup_rejects_a_weak_password(client: Client) -> None:
    response = client.post(
        reverse("account_signup"),
        {"email": "bob@example.com", "password1": "123", "password2": "123"},
    )
    assert response.status_code == 200
    assert not User.objects.exists()


def test_login_with_email_and_logout(client: Client, user: Any) -> None:
    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("accounts:account")).status_code == 200

    response = client.post(reverse("account_logout"))
    assert response.status_code == 302
    response = client.get(reverse("accounts:account"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_pages_require_login(client: Client) -> None:
    for name in ("chat:index", "memory:index", "accounts:account"):
        response = client.get(reverse(name))
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("account_login")), name


def test_home_sends_visitors_to_login_and_members_to_chat(
    client: Client, user_client: Client
) -> None:
    assert client.get("/")["Location"] == reverse("account_login")
    assert user_client.get("/")["Location"] == reverse("chat:index")


def test_wrong_password_is_refused(client: Client, user: Any) -> None:
    response = client.post(reverse("account_login"), {"login": user.email, "password": "nope"})
    assert response.status_code == 200
    assert "not correct" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_login_is_rate_limited_per_account_in_redis(client: Client, user: Any) -> None:
    for _ in range(5):
        client.post(reverse("account_login"), {"login": user.email, "password": "wrong"})
    # The counters live in Redis, so every web process sees the same limit.
    assert get_redis_connection("default").keys("*rl*")

    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_password_reset_sends_an_email_with_a_working_link(
    client: Client, user: Any, mailoutbox: list
) -> None:
    response = client.post(reverse("account_reset_password"), {"email": user.email})
    assert response.status_code == 302
    assert len(mailoutbox) == 1
    body = mailoutbox[0].body
    link = next(word for word in body.split() if "/accounts/password/reset/key/" in word)
    path = link.split("testserver", 1)[1]
    response = client.get(path, follow=True)
    assert response.status_code == 200
    new_password = "another long passphrase 42"
    response = client.post(
        response.redirect_chain[-1][0] if response.redirect_chain else path,
        {"password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new_password)


def test_account_page_shows_the_signed_in_email(user_client: Client, user: Any) -> None:
    response = user_client.get(reverse("accounts:account"))
    assert user.email in response.content.decode()


def test_a_new_account_is_welcomed_and_a_returning_person_is_signed_in(
    client: Client, user: Any
) -> None:
    """After sign-up the flash welcomes a new account; allauth's "Successfully signed in as…"
    stays for signing in."""
    from django.contrib.messages import get_messages

    response = client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
        follow=True,
    )
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == ["Welcome to Mnemo! Your account new@example.com is ready."], said
    client.logout()

    response = client.post(
        reverse("account_login"), {"login": user.email, "password": PASSWORD}, follow=True
    )
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == [f"Successfully signed in as {user.email}."], said
