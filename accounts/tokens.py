"""Personal API tokens: create (shown once), list, revoke, and check a presented token."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiToken, User
from config.errors import Conflict, DomainError

TOKEN_PREFIX = "mnemo_"
MAX_TOKENS_PER_USER = 20
# Writing last_used_at on every request would make each API call a write; once a minute is
# enough to tell an unused token from a live one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(DomainError):
    status = 400


class TooManyTokens(TokenError, Conflict):
    status = 409


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for the person; returns it and the token text (never stored, shown once)."""
    name = " ".join(name.split())
    if not name:
        raise TokenError("Give the token a name, to recognise it later.")
    if len(name) > 100:
        raise TokenError("A token name can be at most 100 characters.")
    if ApiToken.objects.for_user(user).count() >= MAX_TOKENS_PER_USER:
        raise TooManyTokens(
            f"You have {MAX_TOKENS_PER_USER} tokens already; revoke one you no longer use."
        )
    text = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=text[: len(TOKEN_PREFIX) + 6], digest=digest(text)
    )
    return token, text


def revoke_token(*, user: User, token_id: int) -> None:
    """Delete one of the person's tokens; raises ApiToken.DoesNotExist otherwise."""
    deleted, _ = ApiToken.objects.for_user(user).filter(pk=token_id).delete()
    if not deleted:
        raise ApiToken.DoesNotExist


def token_list(*, user: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.for_user(user)


def user_for_token(text: str) -> User | None:
    """The active owner of a presented token, or None; records when it was last used."""
    if not text.startswith(TOKEN_PREFIX) or len(text) > 100:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest(text)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
