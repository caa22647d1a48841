"""Entities: the people, pets, places, organisations and projects in a person's life.

Kept with attributes ("Sarah": works at Google, job software engineer) that change as new
facts arrive, each change recorded with the old and new value.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import Conflict, DomainError
from memory import privacy
from memory.models import Entity, EntityEvent, MemoryEvent


class InvalidEntity(DomainError):
    """A name or attribute Mnemo will not keep (a secret, an order to the assistant)."""

    status = 400


class EntityNameTaken(Conflict):
    """Another of the person's entities already has that name (names are unique per person)."""


_WORD_RE = re.compile(r"[\w'-]+", re.UNICODE)


def refused(text: str) -> bool:
    """A secret or an instruction to the assistant: never kept as an entity's name or value."""
    return privacy.contains_secret(text) or privacy.is_injection(text)


def _check(name: str | None, attributes: dict[str, str]) -> None:
    if name is not None and refused(name):
        raise InvalidEntity("This name looks like a secret or an instruction; it is not kept.")
    for key, value in attributes.items():
        # Read with its key: "pin": "4512" is a PIN even though "4512" alone is not.
        if refused(key) or refused(f"{key} is {value}"):
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
