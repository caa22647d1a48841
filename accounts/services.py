"""Account services: the memory switch, and erasure that leaves nothing of the person."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import zlib
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction
from django.utils import timezone

from accounts.models import ErasureReceipt, User

logger = logging.getLogger(__name__)


def user_cache_prefix(user_id: int) -> str:
    """Every per-person cache key starts with this, so erasure can find them all."""
    return f"user:{user_id}:"


def set_memory_enabled(*, user: User, enabled: bool) -> User:
    """Pause or resume memory: when paused, Mnemo neither learns nor recalls anything."""
    User.objects.filter(pk=user.pk).update(memory_enabled=enabled)
    user.memory_enabled = enabled
    return user


def set_ask_before_remembering(*, user: User, enabled: bool) -> User:
    """Turn review before saving on or off. Off does not approve what already waits: the
    person still answers it (or it expires)."""
    User.objects.filter(pk=user.pk).update(ask_before_remembering=enabled)
    user.ask_before_remembering = enabled
    return user


def subject_hash(email: str) -> str:
    return hmac.new(
        settings.SECRET_KEY.encode(), f"email:{email.lower()}".encode(), hashlib.sha256
    ).hexdigest()


# How the receipt and the erased page name what was deleted, by model: the words of the
# confirmation page (Django's default plurals would read "memorys", "users").
ERASED_LABELS = {
    "accounts.User": "account",
    "accounts.ApiToken": "API tokens",
    "chat.Conversation": "conversations",
    "chat.Message": "messages",
    "memory.Memory": "memories",
    "memory.MemoryEvent": "memory history events",
    "memory.ConversationSummary": "conversation summaries",
    "memory.ExtractionRun": "extraction runs",
    "memory.Entity": "people, pets and places",
    "memory.PendingMemory": "memories waiting for review",
    "memory.LocalOnlyRules": "local-only settings",
    "account.EmailAddress": "email addresses",
}


def _counted(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def erased_items(counts: dict[str, int]) -> list[str]:
    """What of the person's was deleted, in their words, for the erased page: "Your account
    and sign-in details", "1 conversation with 4 messages", "3 memories and their history".

    No zero counts, and no internal rows by name: extraction runs, the history of memories
    and of people, pets and places, sessions and cache keys are said in one line without
    numbers. The exact counts stay on the receipt (and in the API's response).
    """
    counts = {label: n for label, n in counts.items() if n}
    items = []
    if counts.pop("account", 0):
        items.append("Your account and sign-in details (email address and password)")
    counts.pop("email addresses", None)
    conversations, messages = counts.pop("conversations", 0), counts.pop("messages", 0)
    if conversations:
        said = _counted(conversations, "conversation", "conversations")
        if messages:
            said += " with " + _counted(messages, "message", "messages")
        items.append(said)
    elif messages:
        items.append(_counted(messages, "message", "messages"))
    if summaries := counts.pop("conversation summaries", 0):
        items.append(_counted(summaries, "conversation summary", "conversation summaries"))
    history = counts.pop("memory history events", 0)
    if memories := counts.pop("memories", 0):
        said = _counted(memories, "memory", "memories")
        if history:
            said += " and its history" if memories == 1 else " and their history"
        items.append(said)
    if waiting := counts.pop("memories waiting for review", 0):
        items.append(_counted(waiting, "memory waiting for review", "memories waiting for review"))
    entity_history = counts.pop("entity events", 0)
    if entities := counts.pop("people, pets and places", 0):
        items.append(_counted(entities, "person, pet or place", "people, pets and places"))
    if tokens := counts.pop("API tokens", 0):
        items.append(_counted(tokens, "API token", "API tokens"))
    if counts.pop("local-only settings", 0):
        items.append("Your settings for what stays on local models")
    sessions = counts.pop("sessions", 0)
    # Whatever is left is Mnemo's own bookkeeping about the person (extraction runs, cache
    # keys, and any table added later): said, never left out, but not itemised.
    if counts or history or entity_history:
        items.append("The records Mnemo kept while learning from your messages")
    if sessions:
        items.append("You were signed out everywhere you were signed in")
    return items


def erasure_preview(*, user: User) -> dict[str, int]:
    """What erasing this account would delete, by kind (for the confirmation page)."""
    related: Any = user
    return {
        "conversations": related.conversations.count(),
        "messages": related.messages.count(),
        "memories": related.memories.count(),
        "memory history events": related.memory_events.count(),
        "conversation summaries": related.conversation_summaries.count(),
        "people, pets and places": related.entities.count(),
        "memories waiting for review": related.pending_memories.count(),
    }


def _session_keys(user_id: int) -> list[str]:
    """Keys of the live sessions signed in as the person.

    Sessions are not indexed by user, so every live one is read; verifying each signature
    cost 1.2-2 s for 10,000 sessions (bench/erase.py). The user id is read from the
    payload without verifying it first (base64, maybe zlib, JSON: microseconds), and only
    sessions that name the person, or whose payload cannot be read that way, are verified
    and decoded in full. That is exact: a signature covers those same payload bytes.
    """
    keys = []
    sessions = Session.objects.filter(expire_date__gt=timezone.now()).values_list(
        "session_key", "session_data"
    )
    for session_key, session_data in sessions.iterator(chunk_size=5000):
        claimed = _unverified_user_id(session_data)
        if claimed is not None and claimed != str(user_id):
            continue
        decoded = Session(session_key=session_key, session_data=session_data).get_decoded()
        if str(decoded.get("_auth_user_id")) == str(user_id):
            keys.append(session_key)
    return keys


def _unverified_user_id(session_data: str) -> str | None:
    """The `_auth_user_id` a session's payload claims (signature not checked), "" for none,
    or None when the payload is not in the format `django.core.signing` writes."""
    payload = session_data.split(":", 1)[0]
    try:
        raw = signing.b64_decode(payload.removeprefix(".").encode())
        if payload.startswith("."):
            raw = zlib.decompress(raw)
        value = json.loads(raw)
    except (ValueError, zlib.error):
        return None
    if not isinstance(value, dict):
        return None
    return str(value.get("_auth_user_id") or "")


# --- Erasure plan: every row that belongs to a person, found from the models ---


@dataclass(frozen=True)
class ErasureStep:
    """One set-based statement of the erasure; `%s` placeholders all take the person's id."""

    model: type[models.Model]
    action: str  # "delete" | "update"
    sql: str
    params: int  # how many times the person's id appears in `sql`


def _foreign_keys() -> list[tuple[type[models.Model], Any]]:
    """(model, field) for every concrete foreign key (and one-to-one) of every model,
    many-to-many link tables included."""
    keys = []
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy or not model._meta.managed:
            continue
        for fk in model._meta.concrete_fields:
            if fk.many_to_one or fk.one_to_one:
                keys.append((model, fk))
    return keys


def _owned_models() -> dict[type[models.Model], list[Any]]:
    """{model: its cascading foreign keys to the person or to rows that are theirs}.

    A model is the person's data when a foreign key with CASCADE leads from it to the user,
    directly (conversations, memories, email addresses, tokens) or through a parent
    (allauth's email confirmations, the many-to-many links of messages and memories): the
    rows Django's own cascade would delete, found the same way, so a new table is covered
    without touching this code.
    """
    user_model = get_user_model()
    owned: dict[type[models.Model], list[Any]] = {user_model: []}
    keys = _foreign_keys()
    changed = True
    while changed:
        changed = False
        for model, fk in keys:
            target = fk.related_model
            if target in owned and fk.remote_field.on_delete is models.CASCADE:
                edges = owned.setdefault(model, [])
                if fk not in edges:
                    edges.append(fk)
                    changed = True
    return owned


def _statement(verb: str, model: type[models.Model], fk: Any, where: str) -> str:
    """`DELETE FROM <table>`, `UPDATE <table> SET <fk> = NULL` or `SELECT <pk> FROM <table>`
    (`verb` DELETE, UPDATE or SELECT), then `WHERE <fk column> <where>`."""
    # Identifiers only from model metadata, quoted; values are always `%s` parameters.
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    if verb == "SELECT":
        head = f"SELECT {quote(str(model._meta.pk.column))} FROM {table}"  # noqa: S608
    elif verb == "UPDATE":
        head = f"UPDATE {table} SET {quote(fk.column)} = NULL"  # noqa: S608
    else:
        head = f"DELETE FROM {table}"  # noqa: S608
    return f"{head} WHERE {quote(fk.column)} {where}"


def _rows_sql(
    model: type[models.Model],
    owned: dict[type[models.Model], list[Any]],
    seen: tuple[type[models.Model], ...] = (),
) -> tuple[str, int]:
    """SQL selecting the primary keys of `model`'s rows that are the person's, and how many
    `%s` it holds: the union of every cascading path to the user (each one an indexed
    lookup, so no statement scans other people's rows)."""
    if model is get_user_model():
        return "SELECT %s", 1
    parts, params = [], 0
    for fk in owned[model]:
        target = fk.related_model
        if target in seen:
            continue  # a cycle: the rows on it are reached through its other paths
        if target is get_user_model():
            parts.append(_statement("SELECT", model, fk, "= %s"))
            params += 1
        else:
            inner, n = _rows_sql(target, owned, (*seen, model))
            parts.append(_statement("SELECT", model, fk, f"IN ({inner})"))
            params += n
    return " UNION ALL ".join(parts), params


def erasure_plan() -> list[ErasureStep]:
    """The statements that erase a person, in an order that keeps every subquery valid.

    For each model that is the person's data, one DELETE per cascading path (children before
    their parents, so a child's subquery still finds its parents); for each nullable
    foreign key with SET_NULL that points at the person's rows from elsewhere, one UPDATE
    after the referencing table's own rows went and before the rows it points at go.
    PROTECT, RESTRICT or SET(...) towards the person's data is refused here, so a model
    that needs a decision cannot silently escape erasure.
    """
    user_model = get_user_model()
    owned = _owned_models()
    # Who must come before whom: a model referencing rows of an owned model is handled first.
    before: dict[type[models.Model], set[type[models.Model]]] = {m: set() for m in owned}
    nulling: list[tuple[type[models.Model], Any]] = []
    for model, fk in _foreign_keys():
        target = fk.related_model
        if target not in owned or model is target:
            continue
        on_delete = fk.remote_field.on_delete
        if on_delete is models.CASCADE:
            before[target].add(model)
        elif on_delete is models.SET_NULL:
            nulling.append((model, fk))
            before.setdefault(model, set())
            before[target].add(model)
        elif on_delete is models.DO_NOTHING:
            continue
        else:
            raise ImproperlyConfigured(
                f"{model._meta.label}.{fk.name} points at a person's data with "
                f"{on_delete.__name__}: erasure does not know what to do with it."
            )
    order: list[type[models.Model]] = []
    state: dict[type[models.Model], str] = {}

    def visit(model: type[models.Model]) -> None:
        if state.get(model) == "done":
            return
        if state.get(model) == "visiting":
            raise ImproperlyConfigured(f"A cycle of foreign keys through {model._meta.label}.")
        state[model] = "visiting"
        for child in sorted(before.get(model, ()), key=lambda m: m._meta.label):
            visit(child)
        state[model] = "done"
        order.append(model)

    for model in sorted(before, key=lambda m: m._meta.label):
        visit(model)

    steps: list[ErasureStep] = []
    for model in order:
        if model in owned and model is not user_model:
            for fk in owned[model]:
                if fk.related_model is user_model:
                    sql, n = _statement("DELETE", model, fk, "= %s"), 1
                else:
                    inner, n = _rows_sql(fk.related_model, owned)
                    sql = _statement("DELETE", model, fk, f"IN ({inner})")
                steps.append(ErasureStep(model, "delete", sql, n))
        for referencing, fk in nulling:
            if referencing is model:
                inner, n = _rows_sql(fk.related_model, owned)
                sql = _statement("UPDATE", model, fk, f"IN ({inner})")
                steps.append(ErasureStep(model, "update", sql, n))
    user_pk = user_model._meta.pk
    steps.append(
        ErasureStep(user_model, "delete", _statement("DELETE", user_model, user_pk, "= %s"), 1)
    )
    return steps


@transaction.atomic
def _delete_rows(user: User) -> dict[str, int]:
    # Lock the person first: an extraction that is writing for them finishes before we
    # delete (and its rows go too); one that starts after finds no one and writes nothing.
    User.objects.select_for_update().get(pk=user.pk)
    sessions = _session_keys(user.pk)
    Session.objects.filter(session_key__in=sessions).delete()
    # Set-based statements by the person's id (a few dozen, whatever the row counts), not
    # Django's cascade, which loads every primary key into Python and deletes in batches of
    # a few hundred (10.6 s for 100,000 memories, bench/erase.py).
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        # Hash joins over a person's 100,000 ids fit in memory; and JIT compiling each big
        # statement costs more than it saves on statements this simple.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL jit = off")
        for step in erasure_plan():
            cursor.execute(step.sql, [user.pk] * step.params)
            meta = step.model._meta
            if step.action == "delete" and cursor.rowcount and not meta.auto_created:
                label = ERASED_LABELS.get(meta.label, str(meta.verbose_name_plural))
                counts[label] = counts.get(label, 0) + cursor.rowcount
    counts["sessions"] = len(sessions)
    return counts


def erase_account(*, user: User, host: str = "") -> ErasureReceipt:
    """Delete everything that belongs to the person, in one transaction, then their cache keys.

    Returns a receipt holding no personal data (a keyed hash of the email, counts, time).
    Tasks still queued for the person find nothing and recreate nothing.
    """
    user_id, email = user.pk, user.email
    counts = _delete_rows(user)
    counts["cache keys"] = _delete_cache_keys(user_id, email, host)
    receipt = ErasureReceipt.objects.create(subject_hash=subject_hash(email), counts=counts)
    logger.info("erased account %s: %s", receipt.subject_hash[:12], counts)
    return receipt


def _delete_cache_keys(user_id: int, email: str, host: str) -> int:
    patterns = [f"{user_cache_prefix(user_id)}*", f"allauth:rl:*:user:{user_id}"]
    # allauth keys failed logins by a hash of "<host>:<email>", the host as the request gave
    # it (with its port, when not 80/443); the hosts we may serve, with and without the port.
    bare_host = host.rsplit(":", 1)[0] if host.rsplit(":", 1)[-1].isdigit() else host
    for domain in {host, bare_host, *settings.ALLOWED_HOSTS} - {"", "*"}:
        login_hash = hashlib.sha256(f"{domain}:{email.lower()}".encode()).hexdigest()
        patterns.append(f"allauth:rl:*:{login_hash}")
    deleted = 0
    for pattern in patterns:
        deleted += int(cache.delete_pattern(pattern) or 0)  # type: ignore[attr-defined]
    return deleted
