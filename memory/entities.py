"""Entities: the people, pets, places, organisations and projects in a person's life.

Kept with attributes ("Sarah": works at Google, job software engineer) that change as new
facts arrive, each change recorded with the old and new value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Value
from django.db.models.functions import Lower, StrIndex
from django.utils import timezone

from config.errors import Conflict, DomainError
from memory import privacy
from memory.models import Entity, EntityEvent, Memory, MemoryEvent, PendingMemory


class InvalidEntity(DomainError):
    """A name or attribute Mnemo will not keep (a secret, an order to the assistant)."""

    status = 400


class EntityNameTaken(Conflict):
    """Another of the person's entities already has that name (names are unique per person)."""


_WORD_RE = re.compile(r"[\w'-]+", re.UNICODE)


def refused(text: str) -> bool:
    """A secret or an instruction to the assistant: never kept as an entity's name or value."""
    return privacy.contains_secret(text) or privacy.is_injection(text)


# A key that says its value is a credential: whatever the value, it is one ("wifi password":
# "correct horse battery staple", whose first word reads as a description in a sentence).
_CREDENTIAL_KEY = re.compile(
    r"(?:[\w'-]+\s+){0,3}(?:pass(?:word|phrase|code)|pass[ -](?:word|phrase)|pwd?|passwort|"
    r"contrase[ñn]a|mot de passe|pin(?: code| number)?|(?:seed|recovery|secret) (?:phrase|words?)|"
    r"security answer|cvv2?|cvc2?)s?",
    re.IGNORECASE,
)


def refused_attribute(key: str, value: str) -> bool:
    """An attribute Mnemo never keeps: read with its key ("pin": "4512" is a PIN even though
    "4512" alone is not), and any value of a credential's key."""
    return (
        refused(key)
        or refused(f"{key} is {value}")
        or bool(value.strip() and _CREDENTIAL_KEY.fullmatch(" ".join(key.split())))
    )


def _check(name: str | None, attributes: dict[str, str]) -> None:
    if name is not None and refused(name):
        raise InvalidEntity("This name looks like a secret or an instruction; it is not kept.")
    for key, value in attributes.items():
        if refused_attribute(key, value):
            raise InvalidEntity(
                f"“{key}” looks like a secret (a password, code, key or id number); "
                "Mnemo never stores secrets."
            )


def entity_key(name: str) -> str:
    return " ".join(name.lower().split())[:120]


def clean_attributes(attributes: Any) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    if not isinstance(attributes, dict):
        return cleaned
    for key, value in attributes.items():
        name = " ".join(str(key).replace("_", " ").lower().split())[:60]
        text = " ".join(str(value).split())[:300] if value is not None else ""
        if name and text:
            cleaned[name] = text
    return cleaned


def names_in(text: str, max_words: int = 3) -> list[str]:
    """Every 1-3 word phrase of a message, lower-cased: the keys an entity could have."""
    words = [w.lower().removesuffix("'s").strip("'-") for w in _WORD_RE.findall(text)]
    words = [w for w in words if w]
    phrases = {
        " ".join(words[i : i + n])
        for n in range(1, max_words + 1)
        for i in range(len(words) - n + 1)
    }
    return sorted(phrases)[:500]


def _event(
    entity: Entity,
    action: str,
    actor: str,
    *,
    attribute: str = "",
    old: str = "",
    new: str = "",
    source: int | None = None,
) -> None:
    EntityEvent.objects.create(
        user_id=entity.user_id,
        entity=entity if action != "deleted" else None,
        entity_ref=entity.pk,
        action=action,
        actor=actor,
        attribute=attribute,
        old_value=old,
        new_value=new,
        source_message_id=source,
    )


def upsert_entity(
    *,
    user: Any,
    name: str,
    type: str = Entity.Type.OTHER,
    attributes: dict[str, str] | None = None,
    actor: str = MemoryEvent.Actor.EXTRACTOR,
    source_message_id: int | None = None,
) -> tuple[Entity, int]:
    """Create the entity or merge new attributes into it; returns it and how many changed."""
    name = " ".join(name.split())[:120]
    attributes = clean_attributes(attributes or {})
    _check(name, attributes)
    if type not in Entity.Type.values:
        type = Entity.Type.OTHER
    with transaction.atomic():
        entity, created = Entity.objects.select_for_update().get_or_create(
            user=user,
            key=entity_key(name),
            defaults={"name": name, "type": type, "source_message_id": source_message_id},
        )
        changes = 0
        if created:
            _event(entity, "added", actor, new=name, source=source_message_id)
        elif entity.type == Entity.Type.OTHER and type != Entity.Type.OTHER:
            entity.type = type
        for attribute, value in attributes.items():
            old = entity.attributes.get(attribute, "")
            if old != value:
                entity.attributes[attribute] = value
                _event(
                    entity,
                    "updated",
                    actor,
                    attribute=attribute,
                    old=old,
                    new=value,
                    source=source_message_id,
                )
                changes += 1
        if changes or created:
            entity.updated_at = timezone.now()
        entity.save()
    return entity, changes


def update_entity(
    *, user: Any, entity_id: int, attributes: dict[str, str] | None, name: str | None = None
) -> Entity:
    """The person's correction: replaces the attributes (None keeps them), history kept.

    Raises Entity.DoesNotExist for an entity that is not theirs, InvalidEntity for a secret,
    and EntityNameTaken (409) when another of their entities already has the new name.
    """
    _check(
        " ".join(name.split()) if name else None,
        clean_attributes(attributes) if attributes is not None else {},
    )
    try:
        return _update_entity(user=user, entity_id=entity_id, attributes=attributes, name=name)
    except IntegrityError:
        # Renamed concurrently to the same name as another: the same clash, found late.
        raise EntityNameTaken(f"You already have an entity named “{name}”.") from None


def _update_entity(
    *, user: Any, entity_id: int, attributes: dict[str, str] | None, name: str | None
) -> Entity:
    with transaction.atomic():
        entity = Entity.objects.select_for_update().get(user=user, pk=entity_id)
        attributes = clean_attributes(entity.attributes if attributes is None else attributes)
        if name and " ".join(name.split()) != entity.name:
            new_name = " ".join(name.split())[:120]
            clash = (
                Entity.objects.filter(user=user, key=entity_key(new_name))
                .exclude(pk=entity.pk)
                .values_list("name", flat=True)
                .first()
            )
            if clash is not None:
                raise EntityNameTaken(
                    f"You already have an entity named “{clash}”. Choose another name, or "
                    "delete one of the two."
                )
            _event(
                entity,
                "updated",
                MemoryEvent.Actor.USER,
                attribute="name",
                old=entity.name,
                new=new_name,
            )
            entity.name, entity.key = new_name, entity_key(new_name)
        for attribute in sorted(set(entity.attributes) | set(attributes)):
            old, new = entity.attributes.get(attribute, ""), attributes.get(attribute, "")
            if old != new:
                _event(
                    entity, "updated", MemoryEvent.Actor.USER, attribute=attribute, old=old, new=new
                )
        entity.attributes = attributes
        entity.updated_at = timezone.now()
        entity.save()
    return entity


def scrub_history(*, user_id: int, entity_ids: list[int]) -> int:
    """Remove names and values from every event of these entities: the history keeps that a
    change happened, when and by whom, not what it said."""
    return (
        EntityEvent.objects.filter(user_id=user_id, entity_ref__in=entity_ids)
        .exclude(attribute="", old_value="", new_value="")
        .update(attribute="", old_value="", new_value="")
    )


def delete_entity(*, user: Any, entity_id: int) -> None:
    """Delete an entity; its name and values go from its history too."""
    with transaction.atomic():
        entity = Entity.objects.select_for_update().get(user=user, pk=entity_id)
        scrub_history(user_id=entity.user_id, entity_ids=[entity.pk])
        _event(entity, "deleted", MemoryEvent.Actor.USER)
        entity.delete()


# --- Forgetting a fact: what entities learned from it goes too ---


def _mentions(text: str, name: str) -> bool:
    """Whether `text` names `name` as a whole word or phrase (any case)."""
    name = " ".join(name.split())
    return bool(name) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.I) is not None


def _value_words(key: str, value: str) -> set[str]:
    """The telling words of an attribute: its value's ("chicken"), else its key's."""
    return privacy.telling_words(value) or privacy.telling_words(key)


def unlearn(
    *,
    user_id: int,
    content: str,
    sentences: Iterable[str] = (),
    forgotten: Iterable[int] = (),
    actor: str = MemoryEvent.Actor.USER,
    entity_ids: list[int] | None = None,
    pending: list[tuple[int, str, Any]] | None = None,
) -> int:
    """A fact was forgotten (or a proposal of it rejected): what the person's entities learned
    from it goes too. Returns the entities (and pending items) changed.

    `content` is the fact, `sentences` the person's sentences it was quoted from, `forgotten`
    the memories going with it (no longer evidence for anything). Concerned are the entities
    the fact names ("Bruno" in "My dog Bruno is allergic to chicken"). Of each, an attribute
    goes when the fact holds all its telling words ("allergy: chicken", "species: dog") unless
    a living memory naming the entity says them too ("My dog Bruno loves the beach" keeps
    "species: dog"), or the person typed that value themselves (the entity form: theirs to
    change). An entity left with no attribute that no living memory names goes entirely:
    everything Mnemo knew of it came from what was forgotten. The words also go from the
    entity's history (it keeps that a change happened, when and by whom), and from the
    copies of entities waiting with the person's pending items. Scoped to the person; call it
    in the transaction that forgets. `entity_ids` (the entities whose name is in the text) and
    `pending` (id, content, entities of the items that may hold its words), when the caller
    read them already (`services.unquote`, in its one statement), save two queries.
    """
    said = " ".join([content, *sentences])
    said_words = privacy.telling_words(said)
    if not said_words:
        return 0
    forgotten = list(forgotten)
    if pending is None:
        pending = list(
            PendingMemory.objects.filter(user_id=user_id)
            .exclude(entities=[])
            .values_list("pk", "content", "entities")
        )
    changed = _unlearn_pending(user_id, said, said_words, pending)
    # Candidates by SQL (the name inside the forgotten text), confirmed word by word here.
    if entity_ids is None:
        inside = (
            Entity.objects.filter(user_id=user_id)
            .annotate(at=StrIndex(Lower(Value(said)), Lower("name")))
            .filter(at__gt=0)
            .values("pk")
        )
        candidates = Entity.objects.filter(user_id=user_id, pk__in=inside)
    elif entity_ids:
        candidates = Entity.objects.filter(user_id=user_id, pk__in=entity_ids)
    else:
        return changed
    named = [entity for entity in candidates.select_for_update() if _mentions(said, entity.name)]
    if not named:
        return changed
    naming = Q()
    for entity in named:
        naming |= Q(content__icontains=entity.name)
    living = list(
        Memory.objects.filter(user_id=user_id)
        .filter(naming)
        .exclude(pk__in=forgotten)
        .values_list("content", flat=True)
    )
    # The person's own values: the last change of an attribute, by them, to what it holds.
    typed: dict[tuple[int, str], str] = {}
    for ref, attribute, who, value in (
        EntityEvent.objects.filter(user_id=user_id, entity_ref__in=[e.pk for e in named])
        .exclude(attribute="")
        .order_by("created_at", "id")
        .values_list("entity_ref", "attribute", "actor", "new_value")
    ):
        if who == MemoryEvent.Actor.USER:
            typed[(ref, attribute)] = value
        else:
            typed.pop((ref, attribute), None)
    for entity in named:
        still = [privacy.telling_words(c) for c in living if _mentions(c, entity.name)]
        cut = [
            key
            for key, value in entity.attributes.items()
            if (words := _value_words(key, str(value)))
            and words <= said_words
            and not any(words <= other for other in still)
            and typed.get((entity.pk, key)) != value
        ]
        if not cut and (entity.attributes or still):
            continue
        changed += 1
        if not still and not set(entity.attributes) - set(cut):
            scrub_history(user_id=user_id, entity_ids=[entity.pk])
            _event(entity, "deleted", actor)
            entity.delete()
            continue
        EntityEvent.objects.filter(user_id=user_id, entity_ref=entity.pk, attribute__in=cut).update(
            attribute="", old_value="", new_value=""
        )
        _event(entity, "updated", actor)
        entity.attributes = {k: v for k, v in entity.attributes.items() if k not in cut}
        entity.save(update_fields=["attributes"])
    return changed


def _unlearn_pending(
    user_id: int, said: str, said_words: set[str], pending: list[tuple[int, str, Any]]
) -> int:
    """The same cut in the entities waiting with pending items (learned on approval)."""
    changed = 0
    for pk, own, waiting in pending:
        own_words = privacy.telling_words(own)
        kept = []
        for data in waiting if isinstance(waiting, list) else []:
            name = str(data.get("name", "")) if isinstance(data, dict) else ""
            if not name or not _mentions(said, name):
                kept.append(data)
                continue
            attributes = {
                key: value
                for key, value in (data.get("attributes") or {}).items()
                if not (
                    (words := _value_words(key, str(value)))
                    and words <= said_words
                    and not words <= own_words
                )
            }
            if attributes or _mentions(own, name):
                kept.append({**data, "attributes": attributes})
        if kept != waiting:
            PendingMemory.objects.filter(user_id=user_id, pk=pk).update(entities=kept)
            changed += 1
    return changed
