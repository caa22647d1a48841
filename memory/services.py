"""Memory services: remember, recall, correct and forget what Mnemo knows about a person.

Every function takes the user explicitly and scopes every query to them in SQL.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from config import llm
from config.errors import DomainError
from memory import embeddings, guards, privacy, retention, statements, when
from memory import entities as entity_services
from memory.entities import names_in as entity_names_in
from memory.models import ConversationSummary, Entity, Memory, MemoryEvent


class MemoryRequestError(DomainError):
    """A memory request that cannot be served; `message` is shown to the person."""


class InvalidMemory(MemoryRequestError):
    status = 400


class MemoryGone(MemoryRequestError):
    """The memory was deleted meanwhile (another tab, retention): a stale edit."""

    status = 404


def clean_content(content: Any) -> str:
    """Whitespace-normalised memory text; raises InvalidMemory for empty, too long, a secret
    or an instruction to the assistant (none of them is ever stored, whoever writes it)."""
    text = " ".join(content.split()) if isinstance(content, str) else ""
    if not text:
        raise InvalidMemory("A memory cannot be empty.")
    limit = settings.MEMORY_MAX_CHARS
    if len(text) > limit:
        raise InvalidMemory(
            f"A memory can be at most {limit} characters (this one has {len(text)})."
        )
    if privacy.contains_secret(text):
        raise InvalidMemory(
            "This looks like a secret (a password, code, key, card, account or id number). "
            "Mnemo never stores secrets: keep them in a password manager."
        )
    if privacy.is_injection(text):
        raise InvalidMemory(
            "This reads as an instruction to the assistant (a role tag or an order to ignore "
            "its rules), not as something about you, so it is not stored."
        )
    return text


def _event(
    memory: Memory,
    action: str,
    actor: str,
    *,
    old: str = "",
    new: str = "",
    source: int | None = None,
) -> None:
    MemoryEvent.objects.create(
        user_id=memory.user_id,
        memory=memory if action != MemoryEvent.Action.DELETED else None,
        memory_ref=memory.pk,
        kind=memory.kind,
        action=action,
        actor=actor,
        old_content=old,
        new_content=new,
        source_message_id=source,
    )


# --- Writes ---


def remember(
    *,
    user: Any,
    content: str,
    kind: str = Memory.Kind.FACT,
    importance: float = 0.5,
    actor: str = MemoryEvent.Actor.USER,
    source_message_id: int | None = None,
    source_conversation_id: int | None = None,
    source_excerpt: str = "",
    embedding: list[float] | None = None,
) -> Memory:
    """Add a memory (embedded now) and record the `added` event; one transaction."""
    content = clean_content(content)
    if kind not in Memory.Kind.values:
        raise InvalidMemory(f"Unknown kind '{kind}': use one of {', '.join(Memory.Kind.values)}.")
    vector = embedding if embedding is not None else embeddings.embed_one(content)
    # No savepoint inside a caller's transaction (extraction writes a turn in one): only a
    # database error can happen in here, and it rolls the caller's transaction back anyway;
    # a savepoint is two more round trips.
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        memory = Memory.objects.create(
            user=user,
            kind=kind,
            created_at=now,
            updated_at=now,
            expires_at=retention.expiry_for(kind, now),
            content=content,
            embedding=vector,
            importance=max(0.0, min(1.0, importance)),
            source_message_id=source_message_id,
            source_conversation_id=source_conversation_id,
            # The sentences of the person's message that say it, secrets as placeholders.
            source_excerpt=privacy.quote(source_excerpt, content),
        )
        _event(memory, MemoryEvent.Action.ADDED, actor, new=content, source=source_message_id)
    return memory


def lock_person(user_id: int) -> None:
    """Take the person's row lock for the current transaction.

    A forget or a correction also edits the recall keys of the memories learned with it
    (`unlink_recall_keys`), so two of them on sibling memories would each hold one row and
    wait for the other's. Taking the person first, as extraction and retention do, runs them
    one after the other instead.
    """
    get_user_model().objects.select_for_update().filter(pk=user_id).exists()


def _locked(user: Any, memory_id: int) -> Memory:
    try:
        return Memory.objects.for_user(user).select_for_update().get(pk=memory_id)
    except Memory.DoesNotExist:
        raise MemoryGone(
            "This memory no longer exists; it may have been deleted elsewhere."
        ) from None


def update_memory(
    *,
    user: Any,
    memory_id: int,
    content: str | None = None,
    kind: str | None = None,
    actor: str = MemoryEvent.Actor.USER,
    source_message_id: int | None = None,
    source_excerpt: str | None = None,
    embedding: list[float] | None = None,
) -> Memory:
    """Correct a memory's text (re-embedded) or kind, keeping the old text in its history.

    A change learned from a message (`source_message_id`) quotes that message
    (`source_excerpt`, its supporting sentences kept), so quote and link stay together.
    """
    new_content = clean_content(content) if content is not None else None
    if kind is not None and kind not in Memory.Kind.values:
        raise InvalidMemory(f"Unknown kind '{kind}'.")
    vector = embedding
    if vector is None and new_content is not None:
        vector = embeddings.embed_one(new_content)
    with transaction.atomic():
        lock_person(user.pk)
        memory = _locked(user, memory_id)
        old, old_kind = memory.content, memory.kind
        if (new_content is None or new_content == old) and (kind is None or kind == old_kind):
            return memory  # nothing changed: no new version, no history entry
        if new_content is not None and new_content != old:
            memory.content = new_content
            memory.embedding = vector
            memory.recall_keys = ""  # they described the old text
            # The old text is no other memory's search words any more either.
            unlink_recall_keys(user_id=user.pk, texts=[old])
        if kind is not None:
            memory.kind = kind
        memory.updated_at = timezone.now()
        # A changed (or re-kinded) memory starts its life again under its kind's policy.
        memory.expires_at = retention.expiry_for(memory.kind, memory.updated_at)
        if source_message_id is not None:
            memory.source_message_id = source_message_id
            if source_excerpt is not None:
                memory.source_excerpt = privacy.quote(source_excerpt, memory.content)
        memory.save()
        _event(
            memory,
            MemoryEvent.Action.UPDATED,
            actor,
            old=old,
            new=memory.content,
            source=source_message_id,
        )
    return memory


def set_pinned(*, user: Any, memory_id: int, pinned: bool) -> Memory:
    """Pin (never expires) or unpin a memory; records the change in its history."""
    with transaction.atomic():
        memory = _locked(user, memory_id)
        if memory.pinned != pinned:
            memory.pinned = pinned
            memory.save(update_fields=["pinned"])
            action = MemoryEvent.Action.PINNED if pinned else MemoryEvent.Action.UNPINNED
            _event(memory, action, MemoryEvent.Actor.USER, new=memory.content)
    return memory


def scrub_history(*, user: Any, memory_ids: list[int]) -> int:
    """Remove the words from every event of these memories: history keeps that something
    happened, when and by whom, never what a forgotten memory said. Returns events scrubbed."""
    return (
        MemoryEvent.objects.filter(user=user, memory_ref__in=memory_ids)
        .exclude(old_content="", new_content="")
        .update(old_content="", new_content="")
    )


def forget(
    *,
    user: Any,
    memory_id: int,
    actor: str = MemoryEvent.Actor.USER,
    source_message_id: int | None = None,
) -> None:
    """Delete a memory: gone from recall at once, and its words gone from its history.

    Whoever deletes it (the person, the extractor for a contradicted fact, an admin), the
    `deleted` event and every earlier event of the memory keep no text. While a memory lives,
    its history keeps the old text of each correction.
    """
    from memory import review  # review builds on this module

    with transaction.atomic():
        lock_person(user.pk)
        memory = _locked(user, memory_id)
        scrub_history(user=user, memory_ids=[memory.pk])
        review.drop_proposals_about(user=user, memory_id=memory.pk)
        # Its words also go from the recall keys of the memories learned with it, and its
        # sentences from the quotes of those learned from the same message.
        unlink_recall_keys(user_id=user.pk, texts=[memory.content])
        unquote(
            user_id=user.pk,
            source_message_id=memory.source_message_id,
            excerpt=memory.source_excerpt,
            content=memory.content,
            forgotten=[memory.pk],
            actor=actor,
        )
        _event(memory, MemoryEvent.Action.DELETED, actor, source=source_message_id)
        memory.delete()


def _like(text: str) -> str:
    """`%text%` for LIKE, with LIKE's own characters escaped."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# The rows of the person that may say a forgotten fact (privacy.says decides): texts that
# hold one of the forgotten sentences, or every telling word of it. One round trip over the
# four places; table names from model metadata, values as parameters.
_SAYING = "(({column} ILIKE ALL(%(words)s)) OR ({column} LIKE ANY(%(sentences)s)))"


def _saying_sql() -> str:
    from memory.models import PendingMemory

    tables = {
        "memory": Memory._meta.db_table,
        "pending": PendingMemory._meta.db_table,
        "conversation": apps.get_model("chat", "Conversation")._meta.db_table,
        "summary": ConversationSummary._meta.db_table,
    }
    quote = connection.ops.quote_name
    parts = [
        f"SELECT '{place}', id, content, source_excerpt, '' FROM {quote(tables[place])} "  # noqa: S608
        f"WHERE user_id = %(user_id)s AND source_excerpt <> '' "
        f"AND {_SAYING.format(column='source_excerpt')}"
        for place in ("memory", "pending")
    ]
    parts.append(
        f"SELECT 'conversation', id, '', title, '' FROM {quote(tables['conversation'])} "  # noqa: S608
        f"WHERE user_id = %(user_id)s AND {_SAYING.format(column='title')}"
    )
    parts.append(
        f"SELECT 'summary', id, '', content, conversation_title "  # noqa: S608
        f"FROM {quote(tables['summary'])} WHERE user_id = %(user_id)s "
        f"AND ({_SAYING.format(column='content')} "
        f"OR {_SAYING.format(column='conversation_title')})"
    )
    # The person's messages that say it, in conversations that can be summarized.
    message = quote(apps.get_model("chat", "Message")._meta.db_table)
    parts.append(
        f"SELECT 'message', m.id, m.conversation_id::text, m.content, '' "  # noqa: S608
        f"FROM {message} m JOIN {quote(tables['conversation'])} c ON c.id = m.conversation_id "
        f"WHERE m.user_id = %(user_id)s AND c.user_id = %(user_id)s AND NOT c.incognito "
        f"AND m.role = 'user' AND {_SAYING.format(column='m.content')}"
    )
    # The entities it names, and the pending items whose waiting entities may hold it.
    parts.append(
        f"SELECT 'entity', id, '', '', '' FROM {quote(Entity._meta.db_table)} "  # noqa: S608
        f"WHERE user_id = %(user_id)s AND strpos(lower(%(said)s), lower(name)) > 0"
    )
    parts.append(
        f"SELECT 'entities', id, content, entities::text, '' "  # noqa: S608
        f"FROM {quote(tables['pending'])} WHERE user_id = %(user_id)s "
        f"AND entities <> '[]'::jsonb AND entities::text ILIKE ANY(%(words)s)"
    )
    return " UNION ALL ".join(parts)


def unquote(
    *,
    user_id: int,
    source_message_id: int | None,
    excerpt: str,
    content: str,
    forgotten: Iterable[int] = (),
    actor: str = MemoryEvent.Actor.USER,
) -> int:
    """Take a forgotten memory's (or rejected item's) words out of everything else derived
    from what the person said: the quotes of their other memories and pending items, from
    any message (a fact said again later is quoted there too), and their conversation
    summaries (and a summary's copy of the conversation title), and the titles of their
    conversations.

    Cut are the sentences of `excerpt` that say `content` (literally, wherever they are) and
    every sentence that says `content` in other words (`privacy.says`: all its telling
    words). A memory or pending item whose own text says the same thing keeps its quote: it
    is another memory of the fact (or a proposal of it, or its contradiction: "I am no longer
    allergic to …"), which the person sees and may forget or reject too. A summary that
    changed is embedded again, so its vector no longer finds the forgotten words; one left
    empty stays as an empty row (never recalled, listed or exported), so the rolling summary
    starts after it and never reads them from the transcript again.
    The entities the fact names lose what they learned from it, and go when nothing else is
    left of them (`entities.unlearn`; `forgotten`: the memories going, `actor`: who forgets).
    The person's own messages keep their words (their chat history is theirs until they
    delete it). Every query is scoped to the person; call it
    in the transaction that deletes the memory or item. Returns the rows changed.
    `source_message_id` is kept for callers; the scope is the person, not the message.
    """
    del source_message_id
    content = " ".join(content.split())
    if not content and not excerpt:
        return 0
    gone = sorted(set(privacy.supporting_sentences(excerpt, content))) if excerpt else []
    if not content:
        content = " ".join(gone)
    from memory.models import PendingMemory

    words = sorted(privacy.telling_words(content)) or [" ".join(content.split())]
    with connection.cursor() as cursor:
        cursor.execute(
            _saying_sql(),
            {
                "user_id": user_id,
                "said": " ".join([content, *gone]),
                "words": [_like(word) for word in words],
                "sentences": [_like(sentence) for sentence in gone],
            },
        )
        rows = cursor.fetchall()
    changed = 0
    quoting: dict[str, type[Memory] | type[PendingMemory]] = {
        "memory": Memory,
        "pending": PendingMemory,
    }
    messages: list[tuple[int, int, str]] = []
    entity_ids: list[int] = []
    pending: list[tuple[int, str, Any]] = []
    for place, pk, own, said, named in rows:
        if place == "message":
            messages.append((pk, int(own), said))
        elif place == "entity":
            entity_ids.append(pk)
        elif place == "entities":
            pending.append((pk, own, json.loads(said)))
        elif place in quoting:
            if privacy.says(own, content):
                continue  # another memory (or proposal) of the fact: the person's to answer
            cut = privacy.without_statement(said, content, gone)
            if cut != said:
                quoting[place].objects.filter(user_id=user_id, pk=pk).update(source_excerpt=cut)
                changed += 1
        elif place == "conversation":
            # A title is written by the model from the first message (or by the person): one
            # that says the forgotten fact is cleared (shown as "New chat").
            if privacy.without_statement(said, content, gone) != said:
                conversations = apps.get_model("chat", "Conversation")._default_manager
                changed += conversations.filter(user_id=user_id, pk=pk).update(title="")
        else:
            text = privacy.without_statement(said, content, gone)
            title = privacy.without_statement(named, content, gone)
            if (text, title) == (said, named):
                continue
            update: dict[str, Any] = {"conversation_title": title[:120]}
            if text != said:
                # A summary with nothing left keeps only its place in the conversation (it
                # is never recalled, listed or exported): the next summary starts after it,
                # and so never reads the forgotten words from the transcript again.
                update |= {"content": text, "embedding": embeddings.embed_one(text or title or "-")}
            ConversationSummary.objects.filter(user_id=user_id, pk=pk).update(**update)
            changed += 1
    changed += _unsay_in_conversations(user_id, content, gone, messages)
    changed += entity_services.unlearn(
        user_id=user_id,
        content=content,
        sentences=gone,
        forgotten=forgotten,
        actor=actor,
        entity_ids=entity_ids,
        pending=pending,
    )
    return changed


@functools.cache
def _blank_vector() -> list[float]:
    """The vector of an emptied summary (never recalled): not of the words it held."""
    return embeddings.embed_one("-")


def _saying_spans(text: str, content: str, gone: list[str]) -> list[list[int]]:
    """Where in `text` the sentences that say `content` (or hold a `gone` sentence) are."""
    spans = []
    for start, end in privacy.sentences(text):
        sentence = " ".join(text[start:end].split())
        if sentence and privacy.without_statement(sentence, content, gone) != sentence:
            spans.append([start, end])
    return spans


def _unsay_in_conversations(
    user_id: int, content: str, gone: list[str], messages: list[tuple[int, int, str]]
) -> int:
    """A summary reworded by the model may say the fact in words `privacy.says` cannot
    match; the sound cut is the source. Of the person's `messages` (id, conversation, text)
    that may say the forgotten fact (`_saying_sql`), records where they say it (positions
    only) on their conversation's summary, so no summary reads those sentences again
    (`readable_messages`). A summary that had already read one is emptied and rebuilt from
    the start of its conversation by the next summary run, without them. Returns the
    summaries changed."""
    rows = messages
    said: dict[int, dict[str, list[list[int]]]] = {}
    for message_id, conversation_id, text in rows:
        spans = _saying_spans(text, content, gone)
        if spans:
            said.setdefault(conversation_id, {})[str(message_id)] = spans
    if not said:
        return 0
    summaries = {
        summary.conversation_id: summary
        for summary in ConversationSummary.objects.select_for_update().filter(
            user_id=user_id, conversation_id__in=list(said)
        )
    }
    for conversation_id, where in said.items():
        summary = summaries.get(conversation_id)
        if summary is None:
            # Not summarized yet: a marker (never recalled, listed or exported) holds where.
            summary = ConversationSummary(
                user_id=user_id,
                conversation_id=conversation_id,
                content="",
                embedding=_blank_vector(),
                last_message_id=0,
            )
        read = any(int(pk) <= summary.last_message_id for pk in where)
        summary.forgotten_spans = {**summary.forgotten_spans, **where}
        if read and summary.content:
            # Everything it says is read again, without them, by the next summary run: from
            # the start, or after what it read before positions were recorded (its "floor",
            # set by the migration: facts forgotten then may still be in those messages).
            summary.content, summary.embedding = "", _blank_vector()
            summary.last_message_id = int(summary.forgotten_spans.get("floor", 0))
            summary.message_count = 0
        summary.save()
    return len(said)


def readable_messages(summary: ConversationSummary | None, messages: list[Any]) -> list[Any]:
    """The messages (dicts with pk, role, content) a summary may read: without the sentences
    of facts the person forgot, and without the reply to a message that held one (a reply
    may repeat the fact in other words). Messages left empty are left out."""
    spans = summary.forgotten_spans if summary is not None else {}
    if not spans:
        return messages
    kept = []
    after_forgotten = False
    for message in messages:
        if message["role"] != "user":
            if not after_forgotten:
                kept.append(message)
            continue
        cut = spans.get(str(message["pk"]))
        if not isinstance(cut, list):
            cut = []
        after_forgotten = bool(cut)
        if cut:
            text, parts, position = message["content"], [], 0
            for start, end in sorted(cut):
                parts.append(text[position:start])
                position = max(position, end)
            parts.append(text[position:])
            message = {**message, "content": " ".join(" ".join(parts).split())}
        if message["content"]:
            kept.append(message)
    return kept


def forget_all(*, user: Any) -> int:
    """Delete every memory, summary and entity of the person and their histories, and what
    waits for their review; returns the number of memories."""
    from memory import review
    from memory.models import Entity, EntityEvent

    with transaction.atomic():
        # The total would also count the cascaded "memories used" links of chat messages.
        _, per_model = Memory.objects.for_user(user).delete()
        MemoryEvent.objects.filter(user=user).delete()
        ConversationSummary.objects.filter(user=user).delete()
        Entity.objects.filter(user=user).delete()
        EntityEvent.objects.filter(user=user).delete()
        review.forget_all_pending(user=user)
    return per_model.get(Memory._meta.label, 0)


def forget_conversation(*, user: Any, conversation_id: int) -> int:
    """A conversation was deleted: its summary goes, and the memories learned in it stay
    (they are the person's facts) without its words or links to it. Returns the memories
    that lost their quote. Call inside the transaction that deletes the conversation."""
    from memory import review  # review builds on this module

    ConversationSummary.objects.filter(user=user, conversation_id=conversation_id).delete()
    review.forget_conversation(user=user, conversation_id=conversation_id)
    return (
        Memory.objects.for_user(user)
        .filter(source_conversation_id=conversation_id)
        .update(
            source_excerpt="",
            source_message_id=None,
            source_conversation_id=None,
            source_deleted=True,
        )
    )


def confirm(*, user: Any, memory_id: int, kind: str | None = None) -> None:
    """A duplicate statement: the memory is confirmed (and its expiry restarts), not copied.

    `kind`, when the caller already read it, saves reading the memory first.
    """
    if kind is None:
        kind = (
            Memory.objects.for_user(user)
            .filter(pk=memory_id)
            .values_list("kind", flat=True)
            .first()
        )
        if kind is None:
            return
    now = timezone.now()
    # Scoped to the person and the kind read: a memory gone or re-kinded meanwhile is skipped.
    Memory.objects.for_user(user).filter(pk=memory_id, kind=kind).update(
        confirmed_at=now,
        confirmations=F("confirmations") + 1,
        expires_at=retention.expiry_for(kind, now),
    )


# Recall keys are whole facts, one a line, so the words of one fact can be taken out again.
KEY_SEPARATOR = "\n"


def enrich_recall_keys(*, user: Any, memory_id: int, facts: list[str]) -> None:
    """Let recall find a memory by more words: the other facts learned from the same turn.

    Extraction calls it for each memory a turn added or changed, with the turn's other
    memories' texts (`memory.extraction._share_keys`). The words feed recall's full-text ranking
    only; they are never shown or put in the prompt. Each fact is kept whole on a line of its
    own (never cut), so when that fact is forgotten or corrected its words are taken out of
    every memory that borrowed them (`unlink_recall_keys`); the keys are also cleared when
    the memory's own text changes. Secrets and instructions are dropped, repeats skipped, the
    keys bounded. One UPDATE scoped to the person; no history event (keys are derived from
    the memory's turn, not the memory).
    """
    row = Memory.objects.for_user(user).filter(pk=memory_id).values_list("content", "recall_keys")
    found = row.first()
    if found is None:
        return
    content, keys = found
    lines = [line for line in keys.split(KEY_SEPARATOR) if line]
    known = " ".join([content, *lines]).lower()
    limit = 2 * settings.MEMORY_MAX_CHARS
    size = len(keys)
    added = False
    for fact in facts:
        text = " ".join(fact.split()) if isinstance(fact, str) else ""
        if not text or text.lower() in known or guards.contains_secret(text):
            continue
        if guards.is_instruction(text) or size + len(text) + 1 > limit:
            continue
        lines.append(text)
        known += " " + text.lower()
        size += len(text) + 1
        added = True
    if added:
        joined = KEY_SEPARATOR.join(lines)
        Memory.objects.for_user(user).filter(pk=memory_id).update(recall_keys=joined)


def unlink_recall_keys(*, user_id: int, texts: list[str]) -> int:
    """Take these memory texts out of the recall keys of every memory of the person.

    Called wherever a memory's words go (forgotten, expired, trimmed, corrected), before or
    in the same transaction as the change, so no other memory keeps them as search words.
    Whole lines only: a fact is removed exactly as `enrich_recall_keys` stored it. One UPDATE
    over the person's rows that hold one of the texts; returns how many changed.
    """
    texts = sorted({" ".join(text.split()) for text in texts if text})
    if not texts:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE memory_memory
            SET recall_keys = array_to_string(
                ARRAY(SELECT line FROM unnest(string_to_array(recall_keys, %(sep)s)) line
                      WHERE line <> ALL(%(texts)s::text[])),
                %(sep)s)
            WHERE user_id = %(user_id)s AND recall_keys <> ''
              AND string_to_array(recall_keys, %(sep)s) && %(texts)s::text[]
            """,
            {"sep": KEY_SEPARATOR, "texts": texts, "user_id": user_id},
        )
        return cursor.rowcount


def mark_used(*, user: Any, memory_ids: list[int]) -> None:
    """Stamp `last_used_at` on memories a reply used (one UPDATE, after the reply)."""
    if memory_ids:
        Memory.objects.for_user(user).filter(pk__in=memory_ids).update(last_used_at=timezone.now())


def save_summary(
    *,
    user: Any,
    conversation_id: int,
    conversation_title: str,
    content: str,
    last_message_id: int,
    message_count: int,
) -> ConversationSummary:
    """Create or replace the rolling summary of a conversation (embedded for recall).

    The text goes through the privacy filter first: secrets become placeholders and
    sentences that try to instruct the assistant are dropped (a summary is recalled into
    later prompts). Raises InvalidMemory, storing nothing, when nothing is left.
    """
    content = privacy.clean_text(" ".join(content.split()))[:4000]
    if not content.strip():
        raise InvalidMemory("Nothing is left of this summary once secrets and orders are removed.")
    conversation_title = privacy.redact(privacy.without_injections(conversation_title))[0]
    vector = embeddings.embed_one(content)
    summary, _ = ConversationSummary.objects.update_or_create(
        user=user,
        conversation_id=conversation_id,
        defaults={
            "conversation_title": conversation_title[:120],
            "content": content,
            "embedding": vector,
            "last_message_id": last_message_id,
            "message_count": message_count,
            "updated_at": timezone.now(),
        },
    )
    return summary


def summaries_to_rebuild() -> Any:
    """The conversations (ids, as a subquery) whose summary a forget emptied to be rebuilt
    (`_unsay_in_conversations`): for the summary sweep, across people; it writes nothing."""
    return ConversationSummary.objects.filter(content="", message_count=0).values("conversation_id")


def summary_for(*, user: Any, conversation_id: int) -> ConversationSummary | None:
    return ConversationSummary.objects.filter(user=user, conversation_id=conversation_id).first()


def summary_for_conversation(*, conversation_id: int) -> ConversationSummary | None:
    """For the summary sweep, which works across people (it writes nothing itself)."""
    return ConversationSummary.objects.filter(conversation_id=conversation_id).first()


def delete_summary(*, user: Any, summary_id: int) -> None:
    deleted, _ = ConversationSummary.objects.filter(user=user, pk=summary_id).delete()
    if not deleted:
        raise ConversationSummary.DoesNotExist


# --- Recall (the hot path) ---


@dataclass(frozen=True)
class RecalledItem:
    source: str  # "memory", "summary" or "entity"
    id: int
    kind: str
    content: str
    similarity: float
    # BM25 score of the memory's words against the message (0 when no word matches).
    text_rank: float
    # Position in the person's exact vector ranking, and in the BM25 ranking; None when the
    # item is not in that ranking's top (it came by the other ranking, its date or context).
    vector_rank: int | None
    text_position: int | None
    importance: float
    updated_at: datetime
    score: float = 0.0
    tokens: int = 0
    included: bool = False
    # Why it was kept from a prompt to a hosted endpoint (memory/exposure.py), if it was.
    held_back: str = ""

    def record(self) -> dict[str, Any]:
        """The item's scores for the reply's recall record (ids and numbers, no text)."""
        extra = {"held_back": self.held_back} if self.held_back else {}
        return {
            **extra,
            "source": self.source,
            "id": self.id,
            "kind": self.kind,
            "similarity": round(self.similarity, 4),
            "text_rank": round(self.text_rank, 4),
            "vector_rank": self.vector_rank,
            "text_position": self.text_position,
            "importance": round(self.importance, 3),
            "score": round(self.score, 5),
            "included": self.included,
        }


@dataclass(frozen=True)
class Recalled:
    """What recall brought for one message: memories and summaries, ready for the prompt."""

    items: list[RecalledItem] = field(default_factory=list)
    candidates: int = 0
    milliseconds: float = 0.0
    # Everything that was scored, chosen or not (for the inspectable recall record).
    considered: list[RecalledItem] = field(default_factory=list)
    # Why each item kept from a hosted endpoint's prompt was kept (memory/exposure.py).
    held_back: list[str] = field(default_factory=list)

    def record(self, limit: int = 20) -> dict[str, Any]:
        record = {
            "ms": round(self.milliseconds, 2),
            "candidates": self.candidates,
            "items": [item.record() for item in self.considered[:limit]],
        }
        if self.held_back:
            from memory import exposure

            record["held_back"] = exposure.held_back_record(self.held_back)
        return record

    @property
    def memories(self) -> list[RecalledItem]:
        return [item for item in self.items if item.source == "memory"]

    @property
    def summaries(self) -> list[RecalledItem]:
        return [item for item in self.items if item.source == "summary"]

    @property
    def memory_ids(self) -> list[int]:
        return [item.id for item in self.memories]

    def prompt_block(self) -> str:
        """One line per item, "- (kind) text", every text made inert (`as_prompt_data`)."""
        lines = [f"- ({item.kind}) {as_prompt_data(item.content)}" for item in self.memories]
        lines += [
            f"- (earlier conversation) {as_prompt_data(item.content)}" for item in self.summaries
        ]
        lines += [f"- (about {as_prompt_data(item.content)})" for item in self.entities]
        return "\n".join(lines)

    def second_person_lines(self, limit: int | None = None) -> list[str]:
        """The items as short facts told to the person ("You live in Porto."), made inert.

        What a small model follows best (bench/grounding.py): it repeats "You live in …"
        when asked "Where do I live?", and ignores a marked block of first-person notes.
        The `limit` best-scored items, the best last: nearest the question it answers.
        """
        best = sorted(self.items, key=lambda item: (-item.score, item.id))[:limit]
        lines = []
        for item in reversed(best):
            if item.source == "entity":
                lines.append(f"About {item.content}.")
            else:
                lines.append(second_person(item.content))
        return [as_prompt_data(line) for line in lines if line]

    @property
    def entities(self) -> list[RecalledItem]:
        return [item for item in self.items if item.source == "entity"]

    def answering(
        self, question: str, *, limit: int, min_similarity: float, floor: float = 0.0
    ) -> list[RecalledItem]:
        """The few items that can answer `question`, in the order of its parts; [] when none can.

        For models that repeat whatever fact they are shown (a 135M model answers "What is my
        mother's name?" with the person's own name if it is in the prompt). The question is
        read part by part ("Where do I live, and what is my dog called?" is two parts):
        - a part about the person that asks for a slot (`asked_slots`: "Which city am I in
          these days?" asks for the residence) takes the item holding that slot, however
          far the whole message's embedding is from it;
        - a part that names someone ("my dog", "my sister's") takes the most similar item
          about them whose similarity reaches `floor` and that says what the part asks
          (`says_asked`: an age for "How old…", a name for "…called?");
        - when no part found its item, the whole message is matched as before: nothing
          answers unless the best item's cosine similarity reaches `min_similarity`, the
          others need `floor`; when some did, the most similar item still joins if it
          reaches `min_similarity` (and, when some part found nothing, any other that does),
          after the parts' items, up to `limit`.
        The who-check holds throughout: an item about someone the question (or the part) does
        not name is left out, and so is one about the person when only someone else is asked.
        """
        chosen: list[RecalledItem] = []
        refused: list[RecalledItem] = []
        unresolved = 0
        parts = question_parts(question)
        for part in parts:
            found, not_saying = self._answering_part(part, floor=floor)
            unresolved += not found
            chosen += [item for item in found if item not in chosen]
            refused += not_saying
        fitting = [item for item in _who_fits(self.items, question) if item not in refused]
        fitting.sort(key=lambda item: (-item.similarity, item.id))
        if unresolved == len(parts):
            if not fitting or fitting[0].similarity < min_similarity:
                return []
            return [item for item in fitting if item.similarity >= floor][:limit]
        # The most similar item stays a candidate (a slot is a guess: "Which language am I
        # learning?" asks about a task, not the languages spoken); the others join only for
        # a part that found nothing.
        joining = fitting if unresolved else fitting[:1]
        chosen += [i for i in joining if i.similarity >= min_similarity and i not in chosen]
        return chosen[:limit]

    def _answering_part(
        self, part: str, *, floor: float
    ) -> tuple[list[RecalledItem], list[RecalledItem]]:
        """The items that answer one part of a question by its slot or the party it names,
        and the items about that party that do not say what the part asks."""
        named = parties_in(part)
        fitting = _who_fits(self.items, part)
        if named:
            asked = asked_slots(part)
            about = [item for item in fitting if parties_in(item.content) & named]
            saying = [
                item
                for item in about
                if item.similarity >= floor and says_asked(item.content, asked)
            ]
            saying.sort(key=lambda item: (-item.similarity, item.id))
            refused = [item for item in about if not says_asked(item.content, asked)]
            return saying[:1], refused
        if not _ABOUT_ME_RE.search(part):
            return [], []  # "What's the name of this song?" asks for no slot of the person's
        for slot in asked_slots(part):
            holding = [
                item
                for item in fitting
                if item.source == "memory"
                and any(s == slot or s.startswith(slot + ":") for s in _slots_of(item.content))
            ]
            if holding:
                holding.sort(key=lambda item: (-item.similarity, item.id))
                return holding[: 1 if slot in _ONE_VALUE_SLOTS else 2], []
        return [], []


def _who_fits(items: list[RecalledItem], question: str) -> list[RecalledItem]:
    """The items the who-check lets answer `question` (see `Recalled.answering`)."""
    named = parties_in(question)
    about_person = not named or bool(_FIRST_PERSON_RE.search(question))
    return [
        item
        for item in items
        if (parties_in(item.content) & named) or (not parties_in(item.content) and about_person)
    ]


@functools.lru_cache(maxsize=4096)
def _slots_of(content: str) -> tuple[str, ...]:
    return tuple(statements.read(content).slots)


# A part that is about the person ("my", "I", "me"…), so it may ask for one of their slots.
_ABOUT_ME_RE = re.compile(r"\b(?:my|mine|i|me|myself|i'm|im|i've|i'd|i'll)\b", re.IGNORECASE)
# Parts of a compound question: "Where do I live, and what is my dog called?" → two.
_PART_SPLIT_RE = re.compile(r"[?;!]+|,\s*(?:and|also|plus|or|but)?\b|\s+(?:and|also|plus)\s+(?=\w)")
_PART_LEAD_RE = re.compile(r"^\W*(?:and|also|plus|or|but|so)\b\W*", re.IGNORECASE)

# Slots a part about the person asks for, tried in order (memory/statements.py fills them).
# Each is a pattern on the part, lowercased with its typos mended (`_mended`).
_ASKED_SLOTS: list[tuple[str, re.Pattern[str]]] = [
    (slot, re.compile(pattern))
    for slot, pattern in [
        ("name", r"\bname\b|\bcalled\b|\bwho am i\b"),
        ("allergy", r"\ballerg|\bintoleran"),
        ("intolerance", r"\bintoleran"),
        ("timezone", r"\btime ?zone\b"),
        ("language", r"\blanguages?\b|\bspeak\b|\btongue\b"),
        ("age", r"\bhow old\b|\bage\b"),
        ("origin", r"\bborn\b|\bgr[eo]w up\b|\bhometown\b|\boriginally\b|\bwhere\b.*\bfrom\b"),
        (
            "role",
            r"\b(?:job|profession|occupation|career|role)\b|\bdo for (?:a )?(?:living|work)\b"
            r"|\bwork as\b|\bwhat do i do\b",
        ),
        (
            "employer",
            r"\b(?:employer|employed|company|firm)\b|\b(?:where|who)\b.*\bwork(?:ing)?\b(?! on)"
            r"|\bwork(?:ing)? (?:at|for)\b|\bjob\b",
        ),
        (
            "residence",
            r"\b(?:live|lives|reside|residing|based|stay|staying|city|town|address)\b"
            r"|(?<!for a )\bliving\b|\bcall home\b",
        ),
        ("diet", r"\b(?:diet|vegetarian|vegan|pescatarian|meat|dairy)\b|\b(?:can|do) i eat\b"),
    ]
]
# Slots with one value at a time (the others, like allergies, can hold several).
_ONE_VALUE_SLOTS = frozenset(
    ["name", "timezone", "age", "origin", "role", "employer", "residence", "diet"]
)
# The words of _ASKED_SLOTS a typo is mended to ("proffesion" → "profession").
_SLOT_WORDS = (
    "name", "called", "allergic", "allergy", "allergies", "intolerant", "timezone",
    "language", "languages", "speak", "born", "hometown", "originally", "profession",
    "occupation", "career", "living", "employer", "employed", "company", "work", "working",
    "live", "lives", "reside", "residing", "based", "staying", "city", "town", "address",
    "diet", "vegetarian", "vegan", "pescatarian", "where", "what", "which",
)  # fmt: skip


def question_parts(question: str) -> list[str]:
    """The parts of a question, each asking one thing: "What's my name and where do I live?"
    → "What's my name", "where do I live". Parts too short to ask anything are dropped."""
    parts = [_PART_LEAD_RE.sub("", part).strip() for part in _PART_SPLIT_RE.split(question)]
    return [part for part in parts if len(part.split()) >= 2] or [question.strip()]


def _mended(text: str) -> str:
    """`text` lowercased, its words close to a slot word ("proffesion") spelled as that word."""
    import difflib

    words = []
    for word in re.findall(r"[\w'\u2019]+", text.lower()):
        if len(word) >= 5 and word not in _SLOT_WORDS:
            close = difflib.get_close_matches(word, _SLOT_WORDS, n=1, cutoff=0.85)
            word = close[0] if close else word
        words.append(word)
    return " ".join(words)


def asked_slots(part: str) -> list[str]:
    """The slots (memory/statements.py) one part of a question asks for, the likeliest first:
    "Which city am I in these days?" → residence; "what's my job again" → role, employer;
    "my favourite film?" → favorite:film. [] when it asks for none of them."""
    text = _mended(part)
    slots = [slot for slot, pattern in _ASKED_SLOTS if pattern.search(text)]
    favourite = re.search(r"\bfavou?rite (\w+)", text)
    if favourite:
        slots.insert(0, f"favorite:{statements.head_noun(favourite.group(1))}")
    return slots


# What a memory about someone must say to answer a part asking for a slot about them.
_SAYS: dict[str, re.Pattern[str]] = {
    "name": re.compile(
        rf"(?i:\b(?:{statements.RELATIONS}|{statements.SPECIES})\b,?\s+"
        r"(?:is called |is named |is |called |named )?)[A-ZÀ-Þ]"
    ),
    "age": re.compile(r"\b\d{1,3}\b|\byears? old\b|\bage\b", re.IGNORECASE),
    "residence": re.compile(r"\b(?:lives?|living|moved|based|resides?)\b", re.IGNORECASE),
    "role": re.compile(r"\b(?:is an?|works? as|job)\b", re.IGNORECASE),
}


def says_asked(content: str, asked: list[str]) -> bool:
    """Whether a memory about someone says what a part asks of them (True when the part asks
    for nothing `_SAYS` knows): "How old is my brother?" is not answered by "My brother Diego
    is a chef."."""
    checks = [_SAYS[slot] for slot in asked if slot in _SAYS]
    return not checks or any(check.search(content) for check in checks)


# --- Memory text in prompts ---

# People and animals a text is about ("my brother", "her dog"), by their relation or species.
_PARTY_RE = re.compile(
    rf"\b({statements.RELATIONS}|{statements.SPECIES})(?:s|es)?(?:'s|\u2019s)?\b", re.IGNORECASE
)
_FIRST_PERSON_RE = re.compile(r"\b(?:i|me|myself|i'm|i've|i'd|i'll|am i)\b", re.IGNORECASE)


# A question about the person themself: "What is my …", "Where do I …", "How old am I?"; not
# a request that merely mentions them ("Can you help me …", "Fix my code").
_PERSONAL_QUESTION_RE = re.compile(
    r"^\W*(?:(?:what|which|who|whom|whose|where|when|how(?: \w+)?|why)\b[^.!?]*"
    r"\b(?:my|mine|about me|(?:do|did|am|was|have|had) i)\b"
    r"|(?:do|did|am|was|have|had) i\b|(?:is|are|was|were) my\b)",
    re.IGNORECASE,
)


def asks_about_person(message: str) -> bool:
    """Whether a message asks something about the person who sends it."""
    return personal_question(message) is not None


def personal_question(message: str) -> str | None:
    """The first sentence of `message` that asks something about the person, or None."""
    for part in re.split(r"(?<=[.!?])\s+", message):
        if _PERSONAL_QUESTION_RE.search(part):
            return part.strip()
    return None


def parties_in(text: str) -> frozenset[str]:
    """The relations and species a text names, lowercased: "My brother's dog" → brother, dog."""
    return frozenset(match.lower() for match in _PARTY_RE.findall(text))


# Whitespace of every kind (a newline could start a fake section or role line).
_SPACE_RE = re.compile(r"[\s\u2028\u2029\x85]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# Llama-2/Mistral instruction markers and the like, which some templates treat as structure.
_MARKER_RE = re.compile(r"\[/?(?:INST|SYS|SYSTEM|USER|ASSISTANT)\]|<<|>>", re.IGNORECASE)


def as_prompt_data(text: str) -> str:
    """Memory text made inert for a prompt: one line, no markup, no chat-template tokens.

    Angle brackets become look-alikes, so no memory can close or open a `<memories>` block or
    write a chat-template token (`<|im_start|>`, `</s>`); newlines and control characters go,
    so none can start a line of its own (a fake "System:" section or bullet). The words stay
    readable for the model and the person.
    """
    text = _CONTROL_RE.sub("", _SPACE_RE.sub(" ", text))
    text = _MARKER_RE.sub(lambda m: m.group().replace("[", "(").replace("]", ")"), text)
    return text.replace("<", "\u2039").replace(">", "\u203a").strip()


_PERSON_SWAPS = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
    "we": "you", "us": "you", "our": "your", "ours": "yours", "ourselves": "yourselves",
    "i'm": "you're", "i've": "you've", "i'd": "you'd", "i'll": "you'll",
    "we're": "you're", "we've": "you've", "we'd": "you'd", "we'll": "you'll",
}  # fmt: skip
_PERSON_RE = re.compile(
    r"\b(?:i am|i was|we are|we were|" + "|".join(sorted(_PERSON_SWAPS, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)  # fmt: skip


def second_person(text: str) -> str:
    """A first-person memory told back to the person: "I am from Porto" → "You are from Porto"."""

    def swap(match: re.Match[str]) -> str:
        word = match.group().lower().replace("\u2019", "'")
        if word in ("i am", "we are"):
            return "you are"
        if word in ("i was", "we were"):
            return "you were"
        return _PERSON_SWAPS[word]

    text = _PERSON_RE.sub(swap, " ".join(text.split()))
    text = re.sub(r"([.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class RecallWeights:
    """How recall fuses its signals; learned on LoCoMo's dev half (bench/locomo.py --learn).

    relevance = vector / (rrf_k + vector rank) + text / (rrf_k + BM25 rank)
                + text_score x BM25 / best BM25 + similarity x cosine similarity
                + time (when the memory happened in the time the message names)
                + context x the relevance of a top memory learned next to it
                + small importance and recency nudges
    """

    vector: float = 1.0
    text: float = 1.0
    rrf_k: float = 60.0
    # Score fusion next to rank fusion: the BM25 score over the best BM25 score of this
    # message, and the cosine similarity, each times its weight.
    text_score: float = 0.0
    similarity: float = 0.0
    time: float = 0.0
    context: float = 0.0
    # Memories up to this many source messages away in the same conversation are "next to"
    # a top memory (the same message counts as 0 away).
    context_span: int = 1
    # How many of the top memories lend their relevance to their neighbours.
    context_seeds: int = 5
    # BM25's term-frequency saturation and length normalisation (the usual values).
    bm25_k1: float = 1.2
    bm25_b: float = 0.75


# Learned on LoCoMo's dev half (five conversations) by bench/locomo.py --learn; the bench
# reports the leave-one-conversation-out figure next to the in-sample one.
WEIGHTS = RecallWeights(
    vector=1.0,
    text=2.0,
    rrf_k=2.0,
    text_score=0.03,
    similarity=0.03,
    time=0.1,
    context=0.4,
    context_span=2,
    context_seeds=5,
)

# One statement. Every row of the person's live memories is read once (an exact scan, index
# only, of memory_user_recall): its cosine distance to the message and, only for rows sharing
# a word with it (found through memory_user_search, whose table rows also give their BM25
# length and liveness, so they are not looked up in `live`), its BM25 postings. Document
# frequencies and the average length come from the person's own rows in the same statement,
# so the ranking needs no statistics table kept up to date. Candidates are the vector top, the BM25
# top and the memories dated in the time the message names; their fused relevance is
# computed here, their neighbours (same conversation, next source message) are lifted, and
# only the top rows come back with their text, plus the most relevant always-on memories,
# the closest past-conversation summaries and the entities the message names.
RECALL_CTES = """
WITH q AS (
    SELECT %(embedding)s::vector AS v,
           tsvector_to_array(to_tsvector('english', %(text)s)) AS terms
),
live AS MATERIALIZED (
    -- Only columns the index memory_user_recall holds: an index-only scan, no table rows.
    -- Most read first: each later pass decodes a row only up to the last column it needs.
    SELECT m.id, m.embedding <=> q.v AS distance, m.kind,
           m.source_conversation_id AS conversation, m.source_message_id AS message,
           m.search_length AS length, coalesce(m.happened_at, m.created_at) AS happened_at,
           m.importance, m.updated_at
    FROM memory_memory m, q
    WHERE m.user_id = %(user_id)s
      AND (m.pinned OR m.expires_at IS NULL OR m.expires_at > now())
),
matched AS MATERIALIZED (
    -- The person's live rows sharing a word with the message (memory_user_search), with
    -- their text and length; the tsquery is written out here so that the index can use it.
    -- Any word may match (OR), not all of them: "How old is Bruno?" must find "My dog Bruno".
    SELECT m.id, m.search, m.search_length AS length
    FROM memory_memory m
    WHERE m.user_id = %(user_id)s::bigint
      AND m.search @@ regexp_replace(plainto_tsquery('english', %(text)s)::text,
                                     ' (&|<->|<[0-9]+>) ', ' | ', 'g')::tsquery
      AND (m.pinned OR m.expires_at IS NULL OR m.expires_at > now())
),
corpus AS (
    SELECT count(*)::float8 AS n, greatest(avg(length), 1)::float8 AS average FROM live
),
postings AS (
    -- Each matched row's entries for the message's words only: marked (weight A) and kept
    -- by ts_filter before unnest, which otherwise builds every entry's position and weight
    -- arrays (~18 a memory; ~3.5 ms for 600 matched memories).
    SELECT x.id, x.length, p.lexeme, coalesce(cardinality(p.positions), 1) AS tf
    FROM matched x, q,
         unnest(ts_filter(setweight(setweight(x.search, 'D'), 'A', q.terms), '{a}')) p
    WHERE p.lexeme = ANY(q.terms)
),
frequency AS (
    SELECT lexeme, count(*)::float8 AS df FROM postings GROUP BY lexeme
),
bm25 AS (
    SELECT p.id,
           sum(ln(1 + (c.n - f.df + 0.5) / (f.df + 0.5)) * p.tf * (%(k1)s + 1)
               / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.length / c.average))) AS text_score
    FROM postings p JOIN frequency f USING (lexeme), corpus c
    GROUP BY p.id
),
text_top AS (
    SELECT id, text_score, row_number() OVER (ORDER BY text_score DESC, id) AS text_rank
    FROM (SELECT id, text_score FROM bm25 ORDER BY text_score DESC, id LIMIT %(depth)s) b
),
vector_top AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS vector_rank
    FROM (SELECT id, distance FROM live ORDER BY distance, id LIMIT %(depth)s) v
),
dated AS (
    SELECT id FROM live
    WHERE %(period_start)s < %(period_end)s  -- no time named: not even a pass over `live`
      AND happened_at >= %(period_start)s AND happened_at < %(period_end)s
    ORDER BY distance, id LIMIT %(depth)s
),
candidates AS (
    SELECT id, max(vector_rank) AS vector_rank, max(text_rank) AS text_rank,
           max(text_score) AS text_score
    FROM (
        SELECT id, vector_rank, NULL::bigint AS text_rank, NULL::float8 AS text_score
        FROM vector_top
        UNION ALL SELECT id, NULL, text_rank, text_score FROM text_top
        UNION ALL SELECT id, NULL, NULL, NULL FROM dated
    ) c
    GROUP BY id
),
fused AS (
    SELECT c.id, c.vector_rank, c.text_rank, c.text_score,
           coalesce(%(w_vector)s / (%(rrf_k)s + c.vector_rank), 0)
           + coalesce(%(w_text)s / (%(rrf_k)s + c.text_rank), 0)
           + coalesce(%(w_text_score)s * c.text_score
                      / nullif((SELECT max(text_score) FROM text_top), 0), 0)
           + %(w_similarity)s * (1 - l.distance)
           + CASE WHEN l.happened_at >= %(period_start)s AND l.happened_at < %(period_end)s
                  THEN %(w_time)s ELSE 0 END AS relevance
    FROM candidates c JOIN live l USING (id)
),
seeds AS (
    SELECT f.id, f.relevance, l.conversation
    FROM fused f JOIN live l USING (id)
    WHERE %(w_context)s > 0 AND l.conversation IS NOT NULL AND l.message IS NOT NULL
      AND l.kind NOT IN ('profile', 'preference')
    ORDER BY f.relevance DESC, f.id LIMIT %(seeds)s
),
threads AS (
    SELECT id, conversation,
           dense_rank() OVER (PARTITION BY conversation ORDER BY message) AS position
    FROM live
    WHERE EXISTS (SELECT FROM seeds)  -- no seeds (no context weight, no conversations): no pass
      AND conversation IN (SELECT conversation FROM seeds) AND message IS NOT NULL
),
anchors AS MATERIALIZED (
    -- The seeds' own places in their threads, found first: joined in one step with the
    -- threads, the planner (which guesses a CTE's size) could pair every row of a long
    -- conversation with every other before keeping the seeds' (600 rows: 360,000 pairs).
    SELECT s.id, s.relevance, t.conversation, t.position
    FROM seeds s JOIN threads t ON t.id = s.id
),
context AS (
    SELECT n.id, %(w_context)s * max(a.relevance) AS lift
    FROM anchors a
    JOIN threads n ON n.conversation = a.conversation AND n.id <> a.id
                  AND abs(n.position - a.position) <= %(span)s
    GROUP BY n.id
),
relevant AS (
    SELECT l.id, l.distance, f.vector_rank, f.text_rank, coalesce(f.text_score, 0) AS text_score,
           coalesce(f.relevance, 0) + coalesce(x.lift, 0)
           + 0.002 * l.importance
           -- float8 (date_part), not numeric (extract): numeric exp cost ~2.5 us a row
           + 0.001 * exp(-greatest(date_part('epoch', now() - l.updated_at), 0) / 7776000)
           AS relevance
    FROM (SELECT id FROM fused UNION SELECT id FROM context) ids
    JOIN live l USING (id)
    LEFT JOIN fused f USING (id)
    LEFT JOIN context x USING (id)
    WHERE l.kind NOT IN ('profile', 'preference')
      AND (1 - l.distance >= %(min_similarity)s
           OR ((f.text_rank IS NOT NULL OR x.lift IS NOT NULL)
               AND 1 - l.distance >= %(min_similarity)s / 2))
    ORDER BY relevance DESC, l.id
    LIMIT %(top)s
),
always_on AS (
    -- Profile and preference memories come whatever the message, the most relevant first
    -- and at most `always` of them (the token budget then decides).
    SELECT l.id, l.distance, v.vector_rank, NULL::bigint AS text_rank,
           0::float8 AS text_score, 1 - l.distance AS relevance
    FROM live l LEFT JOIN vector_top v USING (id)
    WHERE l.kind IN ('profile', 'preference')
    ORDER BY l.distance, l.id
    LIMIT %(always)s
),
summaries AS (
    SELECT s.id, s.content, s.updated_at, s.tokens, 1 - (s.embedding <=> q.v) AS similarity
    FROM memory_conversationsummary s, q
    WHERE s.user_id = %(user_id)s AND s.conversation_id <> %(exclude_conversation)s
      AND s.content <> ''
    ORDER BY s.embedding <=> q.v, s.id
    LIMIT 3
)
"""
# The CTEs are shared with bench/recall.py, which checks the vector ranking inside them.
RECALL_SQL = (
    RECALL_CTES  # noqa: S608 (two constant strings, no input)
    + """SELECT 'memory', m.id, m.kind, m.content, m.importance, m.updated_at, 1 - r.distance,
       r.text_score, r.vector_rank, r.text_rank, r.relevance, m.tokens,
       (SELECT n::bigint FROM corpus)
FROM (SELECT * FROM relevant UNION ALL SELECT * FROM always_on) r
JOIN memory_memory m ON m.id = r.id AND m.user_id = %(user_id)s
UNION ALL
SELECT 'summary', id, 'summary', content, 0.5::float8, updated_at, similarity, 0::float8,
       rank, NULL, %(w_vector)s / (%(rrf_k)s + rank), tokens, NULL
FROM (SELECT *, row_number() OVER (ORDER BY similarity DESC, id) AS rank FROM summaries) s
WHERE similarity >= %(min_similarity)s
UNION ALL
SELECT 'entity', e.id, e.type,
       e.name || ' (' || e.type || ')' || COALESCE(': ' || (
           SELECT string_agg(a.key || ': ' || a.value, '; ' ORDER BY a.key)
           FROM jsonb_each_text(e.attributes) a
       ), ''),
       0.6::float8, e.updated_at, 1.0::float8, 0::float8, 1, NULL, 1.0::float8, NULL, NULL
FROM memory_entity e
WHERE e.user_id = %(user_id)s AND e.key = ANY(%(names)s::text[])
"""
)

# RECALL_SQL with PostgreSQL's own $n placeholders, for the prepared path: psycopg re-parses a
# %(name)s statement longer than 4 kB on every call (~0.1-0.3 ms here); this is done once.
RECALL_PARAMETERS = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", RECALL_SQL)))
RECALL_SQL_NATIVE = re.sub(
    r"%\((\w+)\)s", lambda m: f"${RECALL_PARAMETERS.index(m.group(1)) + 1}", RECALL_SQL
)
if "%" in RECALL_SQL_NATIVE:  # a literal % would need escaping in the %(name)s form
    raise RuntimeError("RECALL_SQL holds a '%' that is not a parameter")

# A prompt line costs the memory's tokens plus its "- (kind) " prefix and newline.
LINE_TOKENS = 4
# A date no memory has: the period bounds when the message names no time.
_NO_PERIOD = datetime(1, 1, 1, tzinfo=UTC)


def score(
    *,
    vector_rank: int | None,
    text_rank: int | None,
    similarity: float,
    text_share: float = 0.0,
    in_period: bool = False,
    weights: RecallWeights = WEIGHTS,
) -> float:
    """The fused relevance RECALL_SQL computes for a candidate, before context and nudges.

    `text_share` is the candidate's BM25 score over the best of the message. The same
    arithmetic as the SQL, for learning the weights offline (bench/locomo.py --learn).
    """
    fused = weights.similarity * similarity + weights.text_score * text_share
    if vector_rank is not None:
        fused += weights.vector / (weights.rrf_k + vector_rank)
    if text_rank is not None:
        fused += weights.text / (weights.rrf_k + text_rank)
    return fused + (weights.time if in_period else 0.0)


@functools.cache
def _vector_format(dimensions: int) -> str:
    return "[" + ",".join(["%.7g"] * dimensions) + "]"


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form of `vector`, each component as "%.7g" (one format call: a
    generator of f-strings took ~0.1 ms for 384 components)."""
    return _vector_format(len(vector)) % tuple(vector)


def recall_parameters(
    *,
    user: Any,
    query: str,
    vector: list[float],
    limit: int,
    exclude_conversation_id: int | None = None,
    weights: RecallWeights = WEIGHTS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """RECALL_SQL's parameters for one message (also used by bench/recall.py to EXPLAIN it)."""
    period = when.period_in(query, now or timezone.now())
    return {
        "embedding": vector_literal(vector),
        "text": query[:2000],
        "user_id": user.pk,
        "depth": max(limit * 4, 20),
        "top": max(limit * 3, 20),
        "always": limit,
        "exclude_conversation": exclude_conversation_id or 0,
        "names": entity_names_in(query),
        "period_start": period.start if period else _NO_PERIOD,
        "period_end": period.end if period else _NO_PERIOD,
        "min_similarity": settings.MEMORY_MIN_SIMILARITY,
        "k1": weights.bm25_k1,
        "b": weights.bm25_b,
        "w_vector": weights.vector,
        "w_text": weights.text,
        "w_text_score": weights.text_score,
        "w_similarity": weights.similarity,
        "rrf_k": weights.rrf_k,
        "w_time": weights.time,
        "w_context": weights.context,
        "span": weights.context_span,
        "seeds": weights.context_seeds,
    }


def _run_recall(parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
    """RECALL_SQL's rows; a prepared statement on this connection unless turned off."""
    if not settings.MEMORY_RECALL_PREPARED:
        with connection.cursor() as cursor:
            cursor.execute(RECALL_SQL, parameters)
            return cursor.fetchall()
    connection.ensure_connection()
    raw = connection.connection
    # Django turns psycopg's automatic preparing off for the whole connection (poolers); its
    # own cursors bind on the client and never prepare, so this changes nothing for them.
    if raw.prepare_threshold is None:
        # The generic plan always: left to choose, PostgreSQL kept planning recall anew on
        # every call on a connection that had served people with few memories (their custom
        # plans look cheaper than the generic one), ~1-2 ms a reply. Only this statement is
        # prepared on the connection, so the setting concerns nothing else.
        with connection.wrap_database_errors:
            raw.execute("SET plan_cache_mode = force_generic_plan")
        raw.prepare_threshold = 1_000_000
    with connection.wrap_database_errors, psycopg.RawCursor(raw) as cursor:
        values = [parameters[name] for name in RECALL_PARAMETERS]
        cursor.execute(RECALL_SQL_NATIVE, values, prepare=True)
        return cursor.fetchall()


def recall(
    *,
    user: Any,
    query: str,
    embedding: list[float] | None = None,
    limit: int | None = None,
    token_budget: int | None = None,
    exclude_conversation_id: int | None = None,
    weights: RecallWeights | None = None,
    hosted: bool = False,
) -> Recalled:
    """The person's memories most relevant to `query`, within a token budget.

    Always-on kinds (profile, preference; at most `limit`, the most relevant first) come
    first, then relevant facts, tasks and past conversation summaries by fused relevance
    (see RECALL_SQL and RecallWeights). One SQL query; embeds `query` unless given
    `embedding`. Read-only: `last_used_at` is stamped later by `mark_used`.

    `hosted`: the prompt goes to an endpoint that is not local, so local-only items are
    left out, their reasons counted in `held_back` (two more small reads: the person's
    rules and the candidates' own settings).
    """
    started = time.perf_counter()
    limit = limit or settings.MEMORY_RECALL_LIMIT
    budget = token_budget or settings.MEMORY_RECALL_TOKEN_BUDGET
    vector = embedding if embedding is not None else embeddings.embed_one(query)
    parameters = recall_parameters(
        user=user,
        query=query,
        vector=vector,
        limit=limit,
        exclude_conversation_id=exclude_conversation_id,
        weights=weights or WEIGHTS,
    )
    rows = _run_recall(parameters)
    always: list[RecalledItem] = []
    relevant: list[RecalledItem] = []
    live = 0
    for row in rows:
        source, kind, content = row[0], row[2], row[3]
        tokens = row[11] if row[11] is not None else llm.count_tokens(content)
        item = RecalledItem(
            source=source,
            id=row[1],
            kind=kind,
            content=content,
            importance=row[4],
            updated_at=row[5],
            similarity=float(row[6]),
            text_rank=float(row[7] or 0.0),
            vector_rank=row[8],
            text_position=row[9],
            score=float(row[10]),
            tokens=tokens + LINE_TOKENS,
        )
        if source == "memory":
            live = row[12]
        if source == "memory" and kind in Memory.ALWAYS_ON:
            always.append(item)
        else:
            relevant.append(item)
    relevant.sort(key=lambda i: (-i.score, i.id))
    chosen: list[RecalledItem] = []
    considered: list[RecalledItem] = []
    held_back: list[str] = []
    kept_local = _kept_local(user, always + relevant) if hosted else {}
    spent = 0
    relevant_taken = 0
    for item in always + relevant:
        reason = kept_local.get((item.source, item.id))
        if reason:
            held_back.append(reason)
            considered.append(replace(item, held_back=reason))
            continue
        is_relevant = item.source == "summary" or item.kind not in Memory.ALWAYS_ON
        fits = spent + item.tokens <= budget and not (is_relevant and relevant_taken >= limit)
        if fits:
            item = replace(item, included=True)
            chosen.append(item)
            spent += item.tokens
            relevant_taken += is_relevant
        considered.append(item)
    return Recalled(
        items=chosen,
        candidates=live,
        milliseconds=(time.perf_counter() - started) * 1000,
        considered=considered,
        held_back=held_back,
    )


def _kept_local(user: Any, items: list[RecalledItem]) -> dict[tuple[str, int], str]:
    """{(source, id): reason} for the recalled items that must not go to a hosted endpoint."""
    from memory import exposure

    return exposure.hosted_reasons(
        user=user, items=[(item.source, item.id, item.kind, item.content) for item in items]
    )
