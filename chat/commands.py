"""Memory questions answered from memory itself, not by the model.

"What do you know about me?" lists the stored memories, grouped by kind, with a link to the
memory page (a model would improvise). "Forget that I live in Berlin" removes the matching
memory and says which one it was.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from memory import embeddings
from memory import review as memory_review
from memory import services as memory_services
from memory.models import Memory

_ASK_RE = re.compile(
    r"\b(?:what|which things|how much)\b.{0,20}\b(?:do|did|have) you\b.{0,15}"
    r"\b(?:know|remember|learn(?:ed|t)?|stored?|saved?)\b.{0,15}\babout me\b"
    r"|\bshow (?:me )?(?:my|your) memor(?:y|ies)\b"
    r"|\btell me what you (?:know|remember) about me\b",
    re.IGNORECASE,
)
# Paraphrases (and the languages the local embedder handles) by meaning.
_ASK_EXAMPLES = [
    "What do you know about me?",
    "What do you remember about me?",
    "What have you learned about me so far?",
    "Tell me everything you know about me.",
]
_ASK_SIMILARITY = 0.8
_FORGET_RE = re.compile(
    r"^\s*(?:please\s+)?forget\s+(?:that\s+|about\s+)?(?P<what>(?:i|i'm|my|me)\b.+?)\s*[.!]*\s*$",
    re.IGNORECASE,
)
_FORGET_MIN_SIMILARITY = 0.5


MODEL = "mnemo:memory"  # recorded as the reply's model: answered by Mnemo, not an LLM


@dataclass(frozen=True)
class CommandReply:
    text: str
    model: str = MODEL


def _asks_what_we_know(text: str, embedding: list[float] | None) -> bool:
    if _ASK_RE.search(text):
        return True
    if len(text) > 120:
        return False
    query = embedding if embedding is not None else embeddings.embed_one(text)
    return max(_dot(query, example) for example in _example_vectors()) >= _ASK_SIMILARITY


@functools.cache
def _example_vectors() -> list[list[float]]:
    return embeddings.embed(_ASK_EXAMPLES)


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def answer(
    *, user: Any, text: str, incognito: bool, embedding: list[float] | None = None
) -> CommandReply | None:
    """A reply for a memory question or command, or None for an ordinary message."""
    forget = _FORGET_RE.match(text)
    if forget:
        return _forget(user=user, what=forget.group("what"), incognito=incognito)
    if _asks_what_we_know(text, embedding):
        return _list(user=user, incognito=incognito)
    return None


def _memory_page() -> str:
    return reverse("memory:index")


def _list(*, user: Any, incognito: bool) -> CommandReply:
    if not user.memory_enabled:
        return CommandReply(
            "Memory is paused, so I'm not using anything I know about you. "
            "You can see everything and turn memory back on "
            f"[on your memory page]({_memory_page()})."
        )
    memories = list(Memory.objects.for_user(user).live().order_by("kind", "-updated_at"))
    # Not memories yet ("Ask me before remembering"): only counted, never listed or used.
    waiting = memory_review.pending_count(user=user)
    pending = (
        f" {waiting} more wait{'s' if waiting == 1 else ''} for your yes "
        f"[on your memory page]({_memory_page()})."
        if waiting
        else ""
    )
    if not memories:
        return CommandReply(
            "I don't know anything about you yet. As we talk, I'll remember what matters, "
            f"and you'll see all of it [on your memory page]({_memory_page()}).{pending}"
        )
    lines = [f"Here is everything I remember about you ({len(memories)}):", ""]
    for kind, label in Memory.Kind.choices:
        of_kind = [m for m in memories if m.kind == kind]
        if of_kind:
            lines.append(f"**{label}**")
            lines += [f"- {m.content}" for m in of_kind]
            lines.append("")
    note = " This chat is incognito, so nothing from it is added." if incognito else ""
    lines.append(
        f"You can correct or delete any of it [on your memory page]({_memory_page()}).{note}"
        + pending
    )
    return CommandReply("\n".join(lines))


def _forget(*, user: Any, what: str, incognito: bool) -> CommandReply:
    match = _best_match(user=user, what=what)
    if match is None:
        return CommandReply(
            f"I couldn't find a memory matching “{what}”. "
            f"You can browse everything [on your memory page]({_memory_page()})."
        )
    memory_services.forget(user=user, memory_id=match.pk)
    # The reply names the memory by kind and date, never by its words: it is kept in the
    # transcript, and forgetting must leave no copy of the text behind.
    return CommandReply(
        f"Done. I forgot the closest match: a {match.get_kind_display().lower()} memory from "
        f"{match.created_at:%-d %B %Y}.\n\n"
        f"If that was the wrong one, you can add it back [on your memory page]({_memory_page()})."
    )


def _best_match(*, user: Any, what: str) -> Memory | None:
    from pgvector.django import CosineDistance

    vector = embeddings.embed_one(what)
    best = (
        Memory.objects.for_user(user)
        .live()
        .annotate(distance=CosineDistance("embedding", vector))
        .order_by("distance")
        .first()
    )
    if best is None:
        return None
    similarity = 1 - float(best.distance)
    return best if similarity >= _FORGET_MIN_SIMILARITY else None
