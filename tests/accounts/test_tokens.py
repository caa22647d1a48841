"""Personal API tokens (hashed, shown once, revocable, erased) and login throttling."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services, tokens
from accounts.models import ApiToken
from memory import services as memory_services
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

JSON = "application/json"


def test_a_token_created_through_the_api_is_shown_once_and_stored_only_hashed(
    user: Any, user_client: Client
) -> None:
    response = user_client.post("/api/tokens/", {"name": "backup script"}, content_type=JSON)

    assert response.status_code == 201
    text = response.json()["token"]
    stored = ApiToken.objects.get(user=user)
    assert text not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert stored.digest == tokens.digest(text)
    listed = user_client.get("/api/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["backup script"]
    assert text not in json.dumps(listed)


def test_a_bearer_token_acts_as_its_owner_only(user: Any, other_user: Any) -> None:
    memory_services.remember(user=user, content="I live in Lisbon", kind="fact")
    memory_services.remember(user=other_user, content="I live in Oslo", kind="fact")
    _token, text = tokens.create_token(user=user, name="cli")

    response = Client().get("/api/memories/", HTTP_AUTHORIZATION=f"Bearer {text}")

    assert response.status_code == 200
    assert [m["content"] for m in response.json()["results"]] == ["I live in Lisbon"]
    assert ApiToken.objects.get(user=user).last_used_at is not None


@pytest.mark.parametrize("header", ["Bearer mnemo_not-a-real-token", "Bearer", "Bearer a b"])
def test_a_wrong_or_malformed_token_is_401(user: Any, header: str) -> None:
    response = Client().get("/api/memories/", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_revoked_token_no_longer_works(user: Any, user_client: Client) -> None:
    token, text = tokens.create_token(user=user, name="old laptop")
    assert Client().get("/api/memories/", HTTP_AUTHORIZATION=f"Bearer {text}").status_code == 200

    assert user_client.delete(f"/api/tokens/{token.pk}/").status_code == 204

    assert Client().get("/api/memories/", HTTP_AUTHORIZATION=f"Bearer {text}").status_code == 401


def test_another_persons_token_cannot_be_revoked(user: Any, user_client: Client) -> None:
    someone: Any = UserFactory()
    theirs, _ = tokens.create_token(user=someone, name="theirs")

    assert user_client.delete(f"/api/tokens/{theirs.pk}/").status_code == 404
    assert user_client.post(reverse("accounts:revoke-token", args=[theirs.pk])).status_code == 404
    assert ApiToken.objects.filter(pk=theirs.pk).exists()


def test_the_account_page_creates_a_token_shows_it_once_and_revokes_it(
    user: Any, user_client: Client
) -> None:
    response = user_client.post(reverse("accounts:create-token"), {"name": "phone"})

    assert response.status_code == 200
    token = ApiToken.objects.get(user=user)
    page = response.content.decode()
    assert 'id="new-token"' in page and token.prefix in page
    assert 'id="new-token"' not in user_client.get(reverse("accounts:account")).content.decode()

    response = user_client.post(reverse("accounts:revoke-token", args=[token.pk]))
    assert response.status_code == 302
    assert not ApiToken.objects.filter(user=user).exists()


def test_a_token_without_a_name_is_refused_with_a_message(user: Any, user_client: Client) -> None:
    response = user_client.post(reverse("accounts:create-token"), {"name": "  "})

    assert response.status_code == 400
    assert "name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_tokens_are_erased_with_the_account(user: Any) -> None:
    _token, text = tokens.create_token(user=user, name="cli")

    receipt = services.erase_account(user=user)

    assert not ApiToken.objects.exists()
    assert receipt.counts["API tokens"] == 1
    assert Client().get("/api/memories/", HTTP_AUTHORIZATION=f"Bearer {text}").status_code == 401


# --- Login throttling ---


def _login(address: str, email: str, password: str) -> Any:
    return Client(REMOTE_ADDR=address).post(
        reverse("account_login"), {"login": email, "password": password}
    )


def test_guessing_from_one_address_is_429_while_the_owner_still_signs_in_from_theirs(
    user: Any,
) -> None:
    attacker, owner = "203.0.113.7", "198.51.100.20"
    statuses = [_login(attacker, user.email, f"guess-{n}").status_code for n in range(7)]

    assert statuses[:5] == [200] * 5  # the form again, with "wrong password"
    assert statuses[5:] == [429, 429]
    # Even the right password is refused from the guessing address for now...
    assert _login(attacker, user.email, PASSWORD).status_code == 429
    # ...but the owner, from their own address, is not locked out.
    response = _login(owner, user.email, PASSWORD)
    assert response.status_code == 302


def test_http_basic_cannot_be_used_to_guess_passwords(user: Any) -> None:
    import base64

    for n in range(3):
        basic = base64.b64encode(f"{user.email}:guess-{n}".encode()).decode()
        response = Client().get("/api/memories/", HTTP_AUTHORIZATION=f"Basic {basic}")
        assert response.status_code == 401


def test_a_person_has_at_most_twenty_tokens_and_the_21st_is_a_409(
    user: Any, user_client: Client
) -> None:
    for n in range(tokens.MAX_TOKENS_PER_USER):
        tokens.create_token(user=user, name=f"token {n}")

    response = user_client.post("/api/tokens/", {"name": "one more"}, content_type=JSON)

    assert response.status_code == 409
    assert "revoke" in response.json()["detail"]
    assert ApiToken.objects.filter(user=user).count() == tokens.MAX_TOKENS_PER_USER
