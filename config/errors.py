"""Domain errors (services raise them, views and the API show them) and the text check."""

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


class Conflict(DomainError):
    """The request clashes with something that exists (a name already taken)."""

    status = 409


def text_problem(value: str) -> str | None:
    """What makes `value` unstorable text (a NUL byte, a lone surrogate), or None if fine.

    PostgreSQL refuses NUL in text columns, and a lone surrogate cannot be encoded as UTF-8,
    so both must be refused where they enter rather than fail inside a query.
    """
    if "\x00" in value:
        return "a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid text (a lone surrogate character)"
    return None
