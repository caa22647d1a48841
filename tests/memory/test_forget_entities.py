"""Forgetting a fact takes what the person's people, pets and places learned from it.

"My dog Bruno is allergic to chicken" gives a memory and an entity (Bruno: species dog,
allergy chicken). Forgetting the memory, by any path, takes the attributes its words hold,
unless a living memory naming Bruno says them too or the person typed them; an entity left
with nothing, which no living memory names, goes. (The audit of every column for each path
is in test_forget_audit.py.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.export import export_everything
from memory import entities as entity_services
from memory import review
from memory import services as memory_services
from memory.models import Entity, EntityEvent, Memory, PendingMemory
from tests.accounts.test_erasure import _rows_containing
from tests.fake_llm import fake_embedding

pytestmark = pytest.mark.django_db

CANARY = "quokka-7c2d"
ALLERGY = f"My dog Bruno is allergic to {CANARY}"


def _remember(user: Any, content: str, **extra: Any) -> Memory:
    return memory_services.remember(
        user=user, content=content, embedding=fake_embedding(content, 384), **extra
    )


def _bruno(user: Any, **attributes: str) -> Entity:
    entity, _ = entity_services.upsert_entity(
        user=user,
        name="Bruno",
        type="pet",
        attributes={"species": "dog", "allergy": CANARY, **attributes},
    )
    return entity


def test_an_attribute_goes_and_what_a_living_memory_says_of_the_entity_stays(
    user: Any, user_client: Client
) -> None:
    allergy = _remember(user, ALLERGY, source_excerpt=f"{ALLERGY}. I live in Oslo.")
    beach = _remember(user, "My dog Bruno loves the beach")
    bruno = _bruno(user, likes="the beach")
    bruno.memories.add(allergy, beach)

    response = user_client.delete(reverse("api-memory", args=[allergy.pk]))

    assert response.status_code == 204
    bruno.refresh_from_db()
    # "dog" and "the beach" are also what a living memory says of Bruno.
    assert bruno.attributes == {"species": "dog", "likes": "the beach"}
    assert list(bruno.memories.values_list("pk", flat=True)) == [beach.pk]
    assert _rows_containing(CANARY) == {}
    assert CANARY not in str(export_everything(user=user))
    # The history keeps that the attribute changed and then went, not what it said.
    last = EntityEvent.objects.filter(entity_ref=bruno.pk).first()
    assert last is not None
    assert (last.action, last.actor, last.attribute, last.new_value) == ("updated", "user", "", "")


def test_a_value_the_person_typed_stays_and_so_does_the_entity(user: Any) -> None:
    allergy = _remember(user, ALLERGY)
    bruno = _bruno(user)
    entity_services.update_entity(
        user=user, entity_id=bruno.pk, attributes={"species": "dog", "allergy": CANARY}
    )
    # Saved unchanged by the person: no event, still the extractor's value.
    assert not EntityEvent.objects.filter(entity_ref=bruno.pk, actor="user").exists()
    entity_services.update_entity(
        user=user, entity_id=bruno.pk, attributes={"species": "dog", "allergy": f"{CANARY}!"}
    )

    memory_services.forget(user=user, memory_id=allergy.pk)

    bruno.refresh_from_db()
    assert bruno.attributes == {"allergy": f"{CANARY}!"}


def test_an_entity_the_forgotten_fact_does_not_name_is_left_alone(user: Any) -> None:
    allergy = _remember(user, f"I am allergic to {CANARY}")
    # Named by no living memory, with an attribute holding the word, but not named by it.
    rex, _ = entity_services.upsert_entity(
        user=user, name="Rex", type="pet", attributes={"diet": "salmon"}
    )
    entity_services.upsert_entity(user=user, name="Oslo", type="place")

    memory_services.forget(user=user, memory_id=allergy.pk)

    assert set(Entity.objects.filter(user=user).values_list("name", flat=True)) == {"Rex", "Oslo"}
    rex.refresh_from_db()
    assert rex.attributes == {"diet": "salmon"}


def test_another_persons_entity_with_the_same_name_is_untouched(user: Any, other_user: Any) -> None:
    allergy = _remember(user, ALLERGY)
    _bruno(user)
    theirs = _bruno(other_user)

    memory_services.forget(user=user, memory_id=allergy.pk)

    assert not Entity.objects.filter(user=user).exists()
    theirs.refresh_from_db()
    assert theirs.attributes == {"species": "dog", "allergy": CANARY}


def test_rejecting_a_proposal_takes_its_words_from_the_entities_waiting_with_the_others(
    user: Any,
) -> None:
    copy = {"name": "Bruno", "type": "pet", "attributes": {"species": "dog", "allergy": CANARY}}
    common = {
        "user": user,
        "operation": "add",
        "source_message_id": 41,
        "expires_at": timezone.now() + timedelta(hours=1),
        "entities": [copy],
    }
    allergy = PendingMemory.objects.create(
        content=f"{ALLERGY}.",
        embedding=fake_embedding(ALLERGY, 384),
        source_excerpt=f"{ALLERGY}.",
        **common,
    )
    beach = PendingMemory.objects.create(
        content="Bruno loves the beach.",
        embedding=fake_embedding("beach", 384),
        source_excerpt="Bruno loves the beach.",
        **common,
    )

    review.reject(user=user, pending_id=allergy.pk)

    beach.refresh_from_db()
    # Only the rejected sentence said Bruno is a dog allergic to it: both go with it.
    assert beach.entities == [{"name": "Bruno", "type": "pet", "attributes": {}}]
    review.approve(user=user, pending_id=beach.pk)
    assert Entity.objects.get(user=user, name="Bruno").attributes == {}
    assert _rows_containing(CANARY) == {}


def test_deleting_the_pet_fact_from_the_memory_page_leaves_no_empty_pet_behind(
    user: Any, user_client: Client, fake_llm: Any
) -> None:
    """The tester's case: said in a chat, learned by the real extraction, deleted from the
    memory page. Nothing else names Biscuit, so no "Biscuit (Pet) — breed: beagle, 0 linked
    memories" is left on the page or in the export."""
    from tests.memory.labeled_extraction import Case, U, run_case

    fake_llm.responder = lambda request: {"facts": [], "entities": []}
    run_case(Case("biscuit", [U("I have a dog called Biscuit, a beagle.")]), user)
    memory = Memory.objects.for_user(user).get(content__contains="Biscuit")
    biscuit = Entity.objects.get(user=user, name="Biscuit")
    assert biscuit.attributes == {"species": "dog", "breed": "beagle"}
    assert list(biscuit.memories.all()) == [memory]

    response = user_client.post(reverse("memory:delete", args=[memory.pk]))

    assert response.status_code in (200, 302)
    assert not Memory.objects.filter(pk=memory.pk).exists()
    assert not Entity.objects.filter(user=user, name="Biscuit").exists()
    page = user_client.get(reverse("memory:index")).content.decode()
    assert "Biscuit" not in page and "beagle" not in page
