"""Memory services: the public API for what Mnemo knows about each person."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recalled:
    """What recall brought for one message: memories and summaries, ready for the prompt."""

    memories: list[Any] = field(default_factory=list)

    def prompt_block(self) -> str:
        return ""


def recall(*, user: Any, query: str, limit: int = 10) -> Recalled:
    """The person's memories most relevant to `query` (none until the memory engine lands)."""
    return Recalled()
