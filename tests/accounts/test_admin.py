"""The admin console's index: one Accounts section, and a way to the insights page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from accounts.models import User
from tests.factories import PASSWORD


@pytest.fixture
def admin_client_(db: None) -> Client:
    User.objects.create_superuser(email="admin@example.com", password=PASSWORD)
    client = Client()
    assert client.login(email="admin@example.com", password=PASSWORD)
    return client


def test_the_admin_index_has_one_accounts_section_and_links_to_insights(
    admin_client_: Client,
) -> None:
    page = admin_client_.get("/admin/").content.decode()
    captions = re.findall(r"<caption>\s*(?:<a[^>]*>)?([^<]+)", page)
    assert [c.strip() for c in captions].count("Accounts") == 1, captions
    assert 'href="/admin/insights/"' in page
    assert admin_client_.get("/admin/insights/").status_code == 200


def test_a_users_email_addresses_are_edited_on_their_page(admin_client_: Client, user: Any) -> None:
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    page = admin_client_.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    assert user.email in page and "emailaddress_set" in page
    assert admin_client_.get("/admin/account/emailaddress/").status_code == 404
