"""The privacy corpus through the real services: no secret or injection kept, benign text kept.

Each corpus message is sent by its own person through `send_message`, learned from by the real
`memory.extraction.extract` and summarized by the real `summarize_conversation`, with a fake
model that proposes the whole message as the fact (and its longest word as an entity whose
attribute is the message): whatever is kept, the guards alone decided. Then every stored field
is scanned for the planted values: memories, source quotes, summaries, entities, both
histories, conversation titles, the export, and every other table's rows (the person's own
chat messages excepted: the transcript is theirs, and goes when they delete it).

Run with `-s` to see the confusion matrix.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection

from accounts.models import User
from chat import services as chat_services
from chat.export import export_everything
from chat.models import Conversation, Message
from memory import extraction
from memory.models import ConversationSummary, Entity, EntityEvent, Memory, MemoryEvent
from tests.fake_llm import FakeLLM
from tests.memory.privacy_corpus import BENIGN, INJECTIONS, SECRETS

pytestmark = pytest.mark.django_db


def _echo(request: dict[str, Any]) -> str | dict[str, Any]:
    """A model that proposes the message itself: as the fact, the entity, and the summary."""
    schema = (request.get("response_format") or {}).get("schema") or {}
    text = request["messages"][-1]["content"]
    if "facts" in schema.get("properties", {}):
        longest = max(re.findall(r"[^\s,;()]+", text), key=len).strip(".:!?'\"")
        return {
            "facts": [{"kind": "fact", "content": text}],
            "entities": [{"name": longest, "type": "other", "attributes": {"note": text}}],
        }
    if "decisions" in schema.get("properties", {}):
        return {"decisions": []}
    said = [line[4:] for line in text.splitlines() if line.startswith("Me: ")]
    return " ".join(said) or "Nothing."


def _run(text: str, number: int) -> User:
    """One person says `text` once; the turn completes, is learned from and summarized."""
    user = User.objects.create(email=f"corpus{number}@example.com")
    conversation = chat_services.start_conversation(user=user)
    message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=text
    )
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE, content="Noted.")
    extraction.extract(
        user=user, text=message.content, source_message_id=message.pk,
        source_conversation_id=conversation.pk,
    )  # fmt: skip
    chat_services.summarize_conversation(conversation_id=conversation.pk)
    return user


def _needle(value: str) -> re.Pattern[str]:
    # A value counts where it stands alone, not inside a longer number or word ("4512" is not
    # found in "0.45123" or "X4512K"), case-insensitively (an IBAN may be upper-cased).
    return re.compile(r"(?<![0-9A-Za-z.])" + re.escape(value) + r"(?![0-9A-Za-z])", re.I)


def stored_texts(user: Any) -> dict[str, str]:
    """Every text Mnemo keeps about `user`, by place (their own chat messages excepted)."""
    export = export_everything(user=user)
    for conversation in export["conversations"]:
        for message in conversation["messages"]:
            message["content"] = ""  # the person's own transcript
    memories = Memory.objects.filter(user=user)
    entities = Entity.objects.filter(user=user)
    return {
        "memory": "\n".join(memories.values_list("content", flat=True)),
        "excerpt": "\n".join(memories.values_list("source_excerpt", flat=True)),
        "summary": "\n".join(
            f"{s.conversation_title}\n{s.content}"
            for s in ConversationSummary.objects.filter(user=user)
        ),
        "entity": "\n".join(f"{e.name}\n{json.dumps(e.attributes)}" for e in entities),
        "memory history": "\n".join(
            f"{e.old_content}\n{e.new_content}" for e in MemoryEvent.objects.filter(user=user)
        ),
        "entity history": "\n".join(
            f"{e.attribute}\n{e.old_value}\n{e.new_value}"
            for e in EntityEvent.objects.filter(user=user)
        ),
        "title": "\n".join(Conversation.objects.filter(user=user).values_list("title", flat=True)),
        "export": json.dumps(export),
    }


SKIPPED_TABLES = {"django_migrations", "django_content_type", "auth_permission"}


def every_table_text() -> str:
    """Every row of every table as text, without vectors, search vectors or message bodies."""
    parts = []
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            if table in SKIPPED_TABLES:
                continue
            drop = "- 'embedding' - 'search'"
            if table == Message._meta.db_table:
                drop += " - 'content'"
            cursor.execute(f'SELECT (to_jsonb(t) {drop})::text FROM "{table}" t')
            parts += [row[0] for row in cursor.fetchall()]
    return "\n".join(parts)


@dataclass
class Matrix:
    secrets_in: Counter[str] = field(default_factory=Counter)
    secret_messages_leaking: int = 0
    secret_messages_kept_fact: int = 0
    injections_in: Counter[str] = field(default_factory=Counter)
    benign_refused: list[str] = field(default_factory=list)
    benign_summarized: int = 0
    leaks: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [
            "",
            "privacy corpus: confusion matrix",
            f"  planted secrets: {len(SECRETS)} messages, "
            f"{sum(len(p.secrets) for p in SECRETS)} values, "
            f"{len({p.kind for p in SECRETS})} kinds",
            f"    messages leaking a secret somewhere: {self.secret_messages_leaking}",
        ]
        for place, count in sorted(self.secrets_in.items()):
            lines.append(f"      in {place}: {count}")
        lines.append(
            "    messages whose non-secret fact was still learned: "
            f"{self.secret_messages_kept_fact}"
        )
        lines.append(f"  injection attempts: {len(INJECTIONS)}")
        stored = self.injections_in["memory"] + self.injections_in["summary"]
        lines.append(f"    stored: {stored} (memory {self.injections_in['memory']}, "
                     f"summary {self.injections_in['summary']})")  # fmt: skip
        lines.append(f"  benign look-alikes: {len(BENIGN)}")
        lines.append(f"    refused (nothing learned): {len(self.benign_refused)}")
        lines.append(f"    summarized: {self.benign_summarized}")
        lines += [f"    refused: {text}" for text in self.benign_refused]
        lines += [f"  leak: {leak}" for leak in self.leaks[:60]]
        return "\n".join(lines)


def test_the_corpus_keeps_no_secret_and_no_injection_and_refuses_almost_no_benign_text(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_DAILY_TOKEN_BUDGET = 0
    fake_llm.responder = _echo
    matrix = Matrix()
    number = 0
    secret_users = []
    for planted in SECRETS:
        number += 1
        secret_users.append((planted, _run(planted.message, number)))
    injection_users = []
    for text in INJECTIONS:
        number += 1
        injection_users.append((text, _run(text, number)))
    benign_users = []
    for text in BENIGN:
        number += 1
        benign_users.append((text, _run(text, number)))

    everything = every_table_text()
    for planted, user in secret_users:
        texts = stored_texts(user)
        places = set()
        for value in planted.secrets:
            pattern = _needle(value)
            places |= {place for place, text in texts.items() if pattern.search(text)}
            # Long values are unique in the whole database: any table holding one leaks it.
            if len(value) >= 8 and pattern.search(everything):
                places.add("some table")
        if places:
            matrix.secret_messages_leaking += 1
            matrix.secrets_in.update(places)
            matrix.leaks.append(f"[{planted.kind}] {planted.message!r} -> {sorted(places)}")
        if Memory.objects.filter(user=user).exists():
            matrix.secret_messages_kept_fact += 1
    for text, user in injection_users:
        if Memory.objects.filter(user=user).exists():
            matrix.injections_in["memory"] += 1
            matrix.leaks.append(f"[injection] {text!r} -> memory")
        if ConversationSummary.objects.filter(user=user).exists():
            matrix.injections_in["summary"] += 1
            matrix.leaks.append(f"[injection] {text!r} -> summary")
    for text, user in benign_users:
        if not Memory.objects.filter(user=user).exists():
            matrix.benign_refused.append(text)
        if ConversationSummary.objects.filter(user=user).exists():
            matrix.benign_summarized += 1

    print(matrix.report())
    assert matrix.secret_messages_leaking == 0, matrix.report()
    assert sum(matrix.injections_in.values()) == 0, matrix.report()
    assert len(matrix.benign_refused) <= 1, matrix.report()
    assert matrix.benign_summarized >= len(BENIGN) - 1, matrix.report()
