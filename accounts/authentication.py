"""DRF authentication by personal API token: `Authorization: Bearer mnemo_…`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import tokens


class TokenAuthentication(authentication.BaseAuthentication):
    """A bearer token the person created on their account page (stored hashed)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # not ours: the session may authenticate the request
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Give the token after 'Bearer ', no spaces.")
        try:
            text = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("That token is not valid.") from None
        user = tokens.user_for_token(text)
        if user is None:
            raise exceptions.AuthenticationFailed("That token is not valid or was revoked.")
        return user, None

    def authenticate_header(self, request: Request) -> str:
        # Makes a request without credentials a 401 (with this challenge), not a 403.
        return f'{self.keyword} realm="api"'


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token, created on the account page or with "
            "POST /api/tokens/.",
        }
