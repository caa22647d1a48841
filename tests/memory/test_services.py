"""Memory services: writes with their history, bad input, stale edits, recall and isolation."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from chat import services as chat_services
from chat.models import Message
from memory import embeddings, services
from memory.models import ConversationSummary, Memory, MemoryEvent
from memory.services import InvalidMemory, MemoryGone

pytestmark = pytest.mark.django_db


def _events(memory_id: int) -> list[tuple[str, str, str, str]]:
    return list(
        MemoryEvent.objects.filter(memory_ref=memory_id)
        .order_by("created_at", "id")
        .values_list("action", "actor", "old_content", "new_content")
    )


def _snapshot(user: Any) -> list[tuple[Any, ...]]:
    """Everything a write could change about a person's memories, to compare before/after."""
    memories = Memory.objects.filter(user=user).order_by("id")
    return [
        *memories.values_list(
            "id", "kind", "content", "pinned", "confirmations", "last_used_at", "updated_at"
        ),
        ("events", MemoryEvent.objects.filter(user=user).count()),
        ("summaries", ConversationSummary.objects.filter(user=user).count()),
    ]


# --- Writes and their history ---


def test_remember_stores_a_normalized_embedded_memory_and_an_added_event(user: Any) -> None:
    memory = services.remember(user=user, content="  I live   in\nBerlin. ", kind="profile")

    memory.refresh_from_db()
    assert memory.user == user
    assert memory.content == "I live in Berlin."
    assert memory.kind == "profile"
    assert np.allclose(memory.embedding, embeddings.embed_one("I live in Berlin."), atol=1e-6)
    assert _events(memory.pk) == [("added", "user", "", "I live in Berlin.")]


def test_remember_clamps_importance_and_keeps_provenance(user: Any) -> None:
    memory = services.remember(
        user=user,
        content="I have a dog.",
        importance=7,
        actor=MemoryEvent.Actor.EXTRACTOR,
        source_message_id=41,
        source_conversation_id=7,
        source_excerpt="x" * 2000,
    )

    memory.refresh_from_db()
    assert memory.importance == 1.0
    assert (memory.source_message_id, memory.source_conversation_id) == (41, 7)
    assert len(memory.source_excerpt) == 1000
    event = MemoryEvent.objects.get(memory_ref=memory.pk)
    assert (event.actor, event.source_message_id) == ("extractor", 41)


def test_update_memory_replaces_the_text_and_keeps_the_old_one_in_history(user: Any) -> None:
    memory = services.remember(user=user, content="I live in Paris.", kind="profile")
    before = memory.updated_at

    services.update_memory(user=user, memory_id=memory.pk, content="I live in Berlin.")

    memory.refresh_from_db()
    assert memory.content == "I live in Berlin."
    assert memory.updated_at > before
    assert np.allclose(memory.embedding, embeddings.embed_one("I live in Berlin."), atol=1e-6)
    assert _events(memory.pk) == [
        ("added", "user", "", "I live in Paris."),
        ("updated", "user", "I live in Paris.", "I live in Berlin."),
    ]


def test_update_memory_can_change_only_the_kind(user: Any) -> None:
    memory = services.remember(user=user, content="I prefer tea.", kind="fact")
    vector = list(memory.embedding)

    services.update_memory(user=user, memory_id=memory.pk, kind="preference")

    memory.refresh_from_db()
    assert (memory.kind, memory.content) == ("preference", "I prefer tea.")
    assert np.allclose(memory.embedding, vector)


def test_forget_by_the_person_leaves_no_text_in_the_history(user: Any) -> None:
    memory = services.remember(user=user, content="I am afraid of spiders.")
    services.update_memory(user=user, memory_id=memory.pk, content="I am afraid of big spiders.")
    services.set_pinned(user=user, memory_id=memory.pk, pinned=True)

    services.forget(user=user, memory_id=memory.pk)

    assert not Memory.objects.filter(pk=memory.pk).exists()
    deleted = MemoryEvent.objects.get(memory_ref=memory.pk, action="deleted")
    assert (deleted.actor, deleted.old_content, deleted.new_content) == ("user", "", "")
    assert deleted.memory is None
    # The earlier events (added, updated, pinned) keep that they happened, not the words.
    events = MemoryEvent.objects.filter(memory_ref=memory.pk)
    assert sorted(events.values_list("action", flat=True)) == [
        "added", "deleted", "pinned", "updated",
    ]  # fmt: skip
    assert all(e.old_content == e.new_content == "" for e in events)


def test_forget_by_the_extractor_also_leaves_no_text_in_the_history(user: Any) -> None:
    memory = services.remember(user=user, content="I am vegetarian.")

    services.forget(
        user=user, memory_id=memory.pk, actor=MemoryEvent.Actor.EXTRACTOR, source_message_id=9
    )

    assert not Memory.objects.filter(pk=memory.pk).exists()
    deleted = MemoryEvent.objects.get(memory_ref=memory.pk, action="deleted")
    assert (deleted.actor, deleted.old_content, deleted.source_message_id) == ("extractor", "", 9)
    assert not MemoryEvent.objects.filter(memory_ref=memory.pk).exclude(new_content="").exists()


def test_set_pinned_records_pin_and_unpin_once_each(user: Any) -> None:
    memory = services.remember(user=user, content="I am training for a marathon.")

    services.set_pinned(user=user, memory_id=memory.pk, pinned=True)
    services.set_pinned(user=user, memory_id=memory.pk, pinned=True)  # no change, no event
    memory.refresh_from_db()
    assert memory.pinned
    services.set_pinned(user=user, memory_id=memory.pk, pinned=False)

    memory.refresh_from_db()
    assert not memory.pinned
    assert [e[0] for e in _events(memory.pk)] == ["added", "pinned", "unpinned"]


def test_confirm_counts_a_repeated_statement_instead_of_copying_it(user: Any) -> None:
    memory = services.remember(user=user, content="My name is Ada.", kind="profile")

    services.confirm(user=user, memory_id=memory.pk)
    services.confirm(user=user, memory_id=memory.pk)

    memory.refresh_from_db()
    assert memory.confirmations == 2
    assert memory.confirmed_at is not None
    assert Memory.objects.filter(user=user).count() == 1


def test_mark_used_stamps_only_the_given_memories(user: Any) -> None:
    used = services.remember(user=user, content="I like jazz.")
    unused = services.remember(user=user, content="I like chess.")

    services.mark_used(user=user, memory_ids=[used.pk])
    services.mark_used(user=user, memory_ids=[])

    used.refresh_from_db()
    unused.refresh_from_db()
    assert used.last_used_at is not None
    assert unused.last_used_at is None


def test_forget_all_erases_the_persons_memories_history_and_summaries_only(
    user: Any, other_user: Any
) -> None:
    conversation = chat_services.start_conversation(user=user)
    mine = [services.remember(user=user, content=f"I own {n} bikes.") for n in (1, 2)]
    services.save_summary(
        user=user,
        conversation_id=conversation.pk,
        conversation_title="Bikes",
        content="I talked about bikes.",
        last_message_id=1,
        message_count=2,
    )
    # A reply that used a memory links to it; the count is of memories, not of links.
    reply = Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.ASSISTANT, content="Nice."
    )
    reply.memories_used.set(mine)
    theirs = services.remember(user=other_user, content="I own 1 bikes.")
    other_before = _snapshot(other_user)

    count = services.forget_all(user=user)

    assert count == 2
    assert not Memory.objects.filter(user=user).exists()
    assert not MemoryEvent.objects.filter(user=user).exists()
    assert not ConversationSummary.objects.filter(user=user).exists()
    assert reply.memories_used.count() == 0
    assert _snapshot(other_user) == other_before
    assert Memory.objects.filter(pk=theirs.pk).exists()


# --- Bad input ---


@pytest.mark.parametrize("content", ["", "   ", "\n\t ", None, 42])
def test_an_empty_memory_is_refused_with_a_message(user: Any, content: Any) -> None:
    with pytest.raises(InvalidMemory) as error:
        services.remember(user=user, content=content)

    assert error.value.message == "A memory cannot be empty."
    assert error.value.status == 400
    assert not Memory.objects.filter(user=user).exists()


def test_a_memory_over_the_size_limit_is_refused_with_the_limit(user: Any, settings: Any) -> None:
    settings.MEMORY_MAX_CHARS = 50
    services.remember(user=user, content="x" * 50)  # exactly at the limit is fine

    with pytest.raises(InvalidMemory) as error:
        services.remember(user=user, content="x" * 51)

    assert "at most 50 characters" in error.value.message
    assert "51" in error.value.message
    assert Memory.objects.filter(user=user).count() == 1


def test_an_unknown_kind_is_refused_with_the_known_ones(user: Any) -> None:
    with pytest.raises(InvalidMemory) as error:
        services.remember(user=user, content="I like tea.", kind="secret")

    assert "Unknown kind 'secret'" in error.value.message
    assert "profile" in error.value.message
    assert not Memory.objects.filter(user=user).exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"content": "  "}, "cannot be empty"),
        ({"content": "y" * 10_000}, "at most"),
        ({"kind": "gossip"}, "Unknown kind"),
    ],
)
def test_a_bad_correction_is_refused_and_changes_nothing(
    user: Any, changes: dict[str, Any], expected: str
) -> None:
    memory = services.remember(user=user, content="I live in Paris.")
    before = _snapshot(user)

    with pytest.raises(InvalidMemory) as error:
        services.update_memory(user=user, memory_id=memory.pk, **changes)

    assert expected in error.value.message
    assert _snapshot(user) == before


# --- Stale edits and other people's memories ---


def test_editing_a_memory_deleted_elsewhere_raises_memory_gone(user: Any) -> None:
    memory = services.remember(user=user, content="I live in Paris.")
    services.forget(user=user, memory_id=memory.pk)  # another tab, or retention

    with pytest.raises(MemoryGone) as error:
        services.update_memory(user=user, memory_id=memory.pk, content="I live in Rome.")
    assert error.value.status == 404
    assert "no longer exists" in error.value.message
    with pytest.raises(MemoryGone):
        services.set_pinned(user=user, memory_id=memory.pk, pinned=True)
    with pytest.raises(MemoryGone):
        services.forget(user=user, memory_id=memory.pk)
    assert not Memory.objects.filter(pk=memory.pk).exists()


@pytest.mark.parametrize(
    "write",
    [
        lambda user, pk: services.update_memory(user=user, memory_id=pk, content="I was hacked."),
        lambda user, pk: services.update_memory(user=user, memory_id=pk, kind="task"),
        lambda user, pk: services.forget(user=user, memory_id=pk),
        lambda user, pk: services.forget(user=user, memory_id=pk, actor="extractor"),
        lambda user, pk: services.set_pinned(user=user, memory_id=pk, pinned=True),
    ],
    ids=["update-content", "update-kind", "forget", "forget-as-extractor", "pin"],
)
def test_writing_another_persons_memory_raises_memory_gone_and_changes_nothing(
    user: Any, other_user: Any, write: Any
) -> None:
    theirs = services.remember(user=other_user, content="I live in Lisbon.", kind="profile")
    before = _snapshot(other_user)

    with pytest.raises(MemoryGone):
        write(user, theirs.pk)

    assert _snapshot(other_user) == before
    assert not MemoryEvent.objects.filter(user=user).exists()


def test_confirming_or_marking_another_persons_memory_changes_nothing(
    user: Any, other_user: Any
) -> None:
    theirs = services.remember(user=other_user, content="I live in Lisbon.")
    before = _snapshot(other_user)

    services.confirm(user=user, memory_id=theirs.pk)
    services.mark_used(user=user, memory_ids=[theirs.pk])

    assert _snapshot(other_user) == before


def test_deleting_another_persons_summary_raises_and_keeps_it(user: Any, other_user: Any) -> None:
    theirs = services.save_summary(
        user=other_user,
        conversation_id=chat_services.start_conversation(user=other_user).pk,
        conversation_title="Trip",
        content="I planned a trip to Japan.",
        last_message_id=1,
        message_count=2,
    )

    with pytest.raises(ConversationSummary.DoesNotExist):
        services.delete_summary(user=user, summary_id=theirs.pk)

    assert ConversationSummary.objects.filter(pk=theirs.pk).exists()


# --- Recall ---

FACTS = [
    ("profile", "My name is Ada."),
    ("preference", "I prefer short answers."),
    ("fact", "I have a golden retriever named Biscuit."),
    ("fact", "I am allergic to peanuts."),
    ("task", "I am writing a thesis about coral reefs."),
    ("fact", "I play the violin in an orchestra."),
    ("fact", "My sister lives in Toronto."),
]


def _remember_all(user: Any, facts: list[tuple[str, str]]) -> dict[str, Memory]:
    vectors = embeddings.embed([content for _, content in facts])
    return {
        content: services.remember(user=user, content=content, kind=kind, embedding=vector)
        for (kind, content), vector in zip(facts, vectors, strict=True)
    }


def _relevant(recalled: services.Recalled) -> list[str]:
    return [i.content for i in recalled.items if i.kind not in Memory.ALWAYS_ON]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Can I eat a peanut butter sandwich?", "I am allergic to peanuts."),
        ("What should I feed my dog Biscuit?", "I have a golden retriever named Biscuit."),
        ("Any tips for my thesis on coral reefs?", "I am writing a thesis about coral reefs."),
        ("When does my orchestra rehearse?", "I play the violin in an orchestra."),
    ],
)
def test_recall_returns_the_relevant_memory_first(user: Any, query: str, expected: str) -> None:
    _remember_all(user, FACTS)

    recalled = services.recall(user=user, query=query)

    assert _relevant(recalled)[0] == expected


def test_recall_always_includes_profile_and_preference_memories_first(user: Any) -> None:
    _remember_all(user, FACTS)

    recalled = services.recall(user=user, query="How do quantum computers factor integers?")

    contents = [i.content for i in recalled.items]
    assert contents[:2] == ["My name is Ada.", "I prefer short answers."] or contents[:2] == [
        "I prefer short answers.",
        "My name is Ada.",
    ]
    assert recalled.candidates >= 2


def test_recall_leaves_out_expired_memories_but_keeps_pinned_and_unexpired_ones(
    user: Any,
) -> None:
    now = timezone.now()
    stored = _remember_all(
        user,
        [
            ("fact", "I am staying at the Hilton hotel in Rome."),
            ("fact", "I am staying at the Marriott hotel in Rome."),
            ("fact", "I am staying at the Ritz hotel in Rome."),
        ],
    )
    Memory.objects.filter(pk=stored["I am staying at the Hilton hotel in Rome."].pk).update(
        expires_at=now - timedelta(days=1)
    )
    Memory.objects.filter(pk=stored["I am staying at the Marriott hotel in Rome."].pk).update(
        expires_at=now + timedelta(days=1)
    )
    Memory.objects.filter(pk=stored["I am staying at the Ritz hotel in Rome."].pk).update(
        expires_at=now - timedelta(days=1), pinned=True
    )

    recalled = services.recall(user=user, query="Which hotel am I staying at in Rome?")

    assert set(_relevant(recalled)) == {
        "I am staying at the Marriott hotel in Rome.",
        "I am staying at the Ritz hotel in Rome.",
    }


def test_recall_stays_within_the_token_budget(user: Any) -> None:
    _remember_all(user, FACTS)
    query = "Tell me about my dog, my allergy, my thesis, my violin and my sister."
    everything = services.recall(user=user, query=query, token_budget=10_000)
    assert len(everything.items) >= 3
    budget = sum(item.tokens for item in everything.items) - 1

    recalled = services.recall(user=user, query=query, token_budget=budget)

    assert sum(item.tokens for item in recalled.items) <= budget
    assert 0 < len(recalled.items) < len(everything.items)


def test_recall_returns_at_most_limit_relevant_items(user: Any) -> None:
    _remember_all(
        user,
        [
            ("fact", "I love cooking Italian pasta."),
            ("fact", "I love cooking Thai curry."),
            ("fact", "I love cooking French omelettes."),
            ("fact", "I love cooking Mexican tacos."),
            ("fact", "I love cooking Indian dal."),
            ("profile", "My name is Ada."),
        ],
    )

    recalled = services.recall(user=user, query="What do I love cooking?", limit=2)
    unlimited = services.recall(user=user, query="What do I love cooking?", limit=20)

    assert len(_relevant(recalled)) == 2
    assert len(_relevant(unlimited)) == 5
    assert "My name is Ada." in [i.content for i in recalled.items]  # not counted in the limit


def test_recall_brings_the_closest_past_summaries_but_not_the_current_conversations(
    user: Any,
) -> None:
    current = chat_services.start_conversation(user=user)
    earlier = chat_services.start_conversation(user=user)
    unrelated = chat_services.start_conversation(user=user)
    for conversation, text in [
        (current, "I am planning a trip to Japan in April: Tokyo, then Kyoto."),
        (earlier, "I planned a trip to Japan: I booked a ryokan in Kyoto for April."),
        (unrelated, "I asked how to fix a leaking kitchen tap."),
    ]:
        services.save_summary(
            user=user,
            conversation_id=conversation.pk,
            conversation_title="",
            content=text,
            last_message_id=1,
            message_count=4,
        )

    recalled = services.recall(
        user=user, query="Where am I staying in Kyoto?", exclude_conversation_id=current.pk
    )

    summaries = [i.content for i in recalled.summaries]
    assert summaries[0] == "I planned a trip to Japan: I booked a ryokan in Kyoto for April."
    assert "I am planning a trip to Japan in April: Tokyo, then Kyoto." not in summaries
    included = services.recall(user=user, query="Where am I staying in Kyoto?")
    assert "I am planning a trip to Japan in April: Tokyo, then Kyoto." in [
        i.content for i in included.summaries
    ]


def test_recall_of_a_person_without_memories_is_empty(user: Any, other_user: Any) -> None:
    _remember_all(other_user, FACTS)

    recalled = services.recall(user=user, query="Can I eat peanuts?")

    assert recalled.items == []
    assert recalled.prompt_block() == ""


# --- Isolation ---

ACTIVITIES = [
    "swim",
    "cook ramen",
    "play chess",
    "water the plants",
    "call my mother",
    "go running",
    "practice piano",
    "read poetry",
    "bake bread",
    "walk the dog",
]
DAYS = ["Monday", "Wednesday", "Saturday"]


def _near_identical_texts(marker: str) -> list[tuple[str, str]]:
    texts = []
    for index, (activity, day) in enumerate(
        (activity, day) for activity in ACTIVITIES for day in DAYS
    ):
        text = f"I {activity} every {day}"
        # Some memories carry the person's own marker word, the rest are identical.
        texts.append(("fact", f"{text} with {marker}." if index % 3 == 0 else f"{text}."))
    texts[0] = ("profile", f"My nickname is {marker}.")
    return texts


def test_recall_never_returns_another_persons_memories_or_summaries(
    user: Any, other_user: Any
) -> None:
    rng = random.Random(20240601)
    people = {user.pk: (user, "Zephyr"), other_user.pk: (other_user, "Quokka")}
    queries: list[str] = []
    for person, marker in people.values():
        texts = _near_identical_texts(marker)
        assert len(texts) == 30
        _remember_all(person, texts)
        queries += [content for _, content in texts]
        for index, day in enumerate(DAYS):
            services.save_summary(
                user=person,
                conversation_id=chat_services.start_conversation(user=person).pk,
                conversation_title=f"Week {index}",
                content=f"On {day} I talked about my plans with {marker}.",
                last_message_id=1,
                message_count=2,
            )
    own_memories = {
        pk: set(Memory.objects.filter(user_id=pk).values_list("pk", flat=True)) for pk in people
    }
    own_summaries = {
        pk: set(ConversationSummary.objects.filter(user_id=pk).values_list("pk", flat=True))
        for pk in people
    }

    returned = 0
    found_own_copy = 0
    for _ in range(200):
        person, _marker = people[rng.choice(list(people))]
        query = rng.choice(queries)
        recalled = services.recall(user=person, query=query, limit=rng.randint(1, 10))
        memory_ids = set(recalled.memory_ids)
        summary_ids = {i.id for i in recalled.summaries}
        # Checked against the database, not against what recall says about itself.
        foreign_summaries = ConversationSummary.objects.filter(pk__in=summary_ids).exclude(
            user=person
        )
        assert not Memory.objects.filter(pk__in=memory_ids).exclude(user=person).exists()
        assert not foreign_summaries.exists()
        assert memory_ids <= own_memories[person.pk]
        assert summary_ids <= own_summaries[person.pk]
        returned += len(memory_ids) + len(summary_ids)
        own_copy = Memory.objects.filter(user=person, content=query).first()
        if own_copy is not None and own_copy.pk in memory_ids:
            found_own_copy += 1
    assert returned > 200  # the searches did return things, so the check above means something
    assert found_own_copy > 50


@pytest.mark.django_db
def test_forgetting_a_memory_removes_its_links_and_clears_its_history_pointer(user: Any) -> None:
    # The link tables and the history pointer keep no database-level foreign key (erasure
    # speed): Django's delete must still remove the links and null the pointer itself.
    from memory.models import Entity

    memory = services.remember(user=user, content="I keep bees on the roof")
    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content="Tell me about my bees"
    )
    reply.memories_used.add(memory)
    entity = Entity.objects.create(user=user, name="Bees", key="bees", type="other")
    entity.memories.add(memory)

    services.forget(user=user, memory_id=memory.pk)

    assert not Message.memories_used.through.objects.filter(memory_id=memory.pk).exists()
    assert not Entity.memories.through.objects.filter(memory_id=memory.pk).exists()
    events = MemoryEvent.objects.filter(memory_ref=memory.pk)
    assert events.count() == 2  # added, deleted
    assert not events.exclude(memory=None).exists()
