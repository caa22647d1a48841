"""Account services: the memory switch, and erasure that leaves nothing of the person."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import transaction
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
    "account.EmailAddress": "email addresses",
}


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
    }


def _session_keys(user_id: int) -> list[str]:
    keys = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user_id):
            keys.append(session.session_key)
    return keys


@transaction.atomic
def _delete_rows(user: User) -> dict[str, int]:
    # Lock the person first: an extraction that is writing for them finishes before we
    # delete (and its rows go too); one that starts after finds no one and writes nothing.
    User.objects.select_for_update().get(pk=user.pk)
    sessions = _session_keys(user.pk)
    Session.objects.filter(session_key__in=sessions).delete()
    # Every row that belongs to the person has a foreign key to them with CASCADE:
    # conversations, messages, memories, events, summaries, extraction runs, email addresses.
    _, per_model = user.delete()
    counts: dict[str, int] = {}
    for label, n in per_model.items():
        model = apps.get_model(label)
        if n and not model._meta.auto_created:  # skip many-to-many link tables
            counts[ERASED_LABELS.get(label, str(model._meta.verbose_name_plural))] = n
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
