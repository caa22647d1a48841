"""allauth adapter: failed logins are limited per address *and* account, never per account alone."""

from __future__ import annotations

import hashlib
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.internal.ratelimit import get_ip, parse_rate
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):
    """allauth counts "5 failures" per account alone, so anyone who knows an email address can
    lock its owner out. Here they are counted per address and account: a guesser is stopped
    (429) where they guess from, while the owner still signs in from their own address. The
    per-address limit (allauth's `login_failed` `…/ip`) still bounds guessing across accounts.
    """

    def _account_attempts_key(self, request: HttpRequest, **credentials: Any) -> str:
        # Ends with allauth's own hash of "<host>:<email>", so erasing the account finds it
        # (accounts.services._delete_cache_keys); the address is kept only as a hash.
        login = self._get_login_attempts_cache_key(request, **credentials)
        login_hash = hashlib.sha256(login.encode()).hexdigest()
        address = hashlib.sha256(get_ip(request).encode()).hexdigest()[:16]
        return f"allauth:rl:mnemo:login_failed:{address}:{login_hash}"

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        super().pre_authenticate(request, **credentials)
        rate = parse_rate(settings.LOGIN_FAILED_PER_ACCOUNT_LIMIT)
        if cache.get(self._account_attempts_key(request, **credentials), 0) >= rate.amount:
            self._rollback_login_failed_rl_usage()
            raise self.validation_error("too_many_login_attempts")

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        rate = parse_rate(settings.LOGIN_FAILED_PER_ACCOUNT_LIMIT)
        key = self._account_attempts_key(request, **credentials)
        # The window starts at the first failure; only failures count, never a good login.
        cache.add(key, 0, timeout=int(rate.duration))
        cache.incr(key)
        super().authentication_failed(request, **credentials)

    # A new account is welcomed: allauth says "Successfully signed in as …" after sign-up
    # too, from the same template. `post_login` knows which it was; the adapter is made anew
    # for each request, so the flag lives no longer than this login.
    _LOGGED_IN = "account/messages/logged_in.txt"
    _SIGNED_UP = "account/messages/signed_up.txt"

    def post_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> Any:
        self._signed_up = bool(kwargs.get("signup"))
        return super().post_login(request, user, **kwargs)

    def add_message(
        self,
        request: HttpRequest,
        level: int,
        message_template: str | None = None,
        message_context: dict[str, Any] | None = None,
        extra_tags: str = "",
        message: str | None = None,
    ) -> None:
        if message_template == self._LOGGED_IN and getattr(self, "_signed_up", False):
            message_template = self._SIGNED_UP
        super().add_message(
            request, level, message_template, message_context, extra_tags, message=message
        )
