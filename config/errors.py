"""The base of every domain error: services raise them, views and the API show them."""

from __future__ import annotations


class DomainError(Exception):
    """A request a service cannot serve.

    `message` is written for the person and shown as is; `status` is the HTTP status the
    pages and the API answer with (always a 4xx: bad input, not ours, gone, too many).
    """

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
