"""Recall's ranking: exact vector part, BM25 over the person's own rows, time and context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from config import llm
from memory import when
from memory.models import Memory
from memory.services import RecallWeights, enrich_recall_keys, recall, update_memory

pytestmark = pytest.mark.django_db

DIM = 384
VECTOR_ONLY = RecallWeights(vector=1.0, text=0.0, time=0.0, context=0.0)


def _unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _store(user: Any, contents: list[str], vectors: np.ndarray, **fields: Any) -> list[Memory]:
    return Memory.objects.bulk_create(
        Memory(user=user, kind=Memory.Kind.FACT, content=c, embedding=list(v), **fields)
        for c, v in zip(contents, vectors, strict=True)
    )


def test_the_vector_part_equals_an_exact_numpy_search_over_the_persons_rows(
    user: Any, other_user: Any, settings: Any
) -> None:
    settings.MEMORY_MIN_SIMILARITY = -1.0
    rng = np.random.default_rng(11)
    mine = _unit(rng, 300)
    # The other person's rows sit right next to every query: a search that is not scoped to
    # the person first would return them.
    queries = _unit(rng, 20)
    _store(other_user, [f"other {i}" for i in range(20)], queries)
    own = _store(user, [f"memory {i}" for i in range(300)], mine)
    ids = np.array([m.pk for m in own])

    for query in queries:
        recalled = recall(user=user, query="", embedding=list(query), limit=10, weights=VECTOR_ONLY)
        similarity = mine @ query
        exact = ids[np.lexsort((ids, -similarity))][:30]
        assert [item.id for item in recalled.considered] == list(exact)
        assert [item.vector_rank for item in recalled.considered] == list(range(1, 31))


def test_bm25_statistics_come_from_the_persons_own_memories_only(
    user: Any, other_user: Any, settings: Any
) -> None:
    settings.MEMORY_MIN_SIMILARITY = -1.0  # random vectors: only the words decide here
    rng = np.random.default_rng(12)
    contents = [
        "I adopted a greyhound called Comet.",
        "Comet sleeps on the sofa.",
        "I went sailing on the lake.",
        "My sister visited in spring.",
    ]
    _store(user, contents, _unit(rng, len(contents)))
    before = recall(user=user, query="Where does Comet sleep?", limit=5)
    # Another person mentions "Comet" everywhere: if document frequencies leaked across
    # people, the word would look common and its score would drop.
    _store(other_user, [f"Comet again {i}" for i in range(50)], _unit(rng, 50))

    after = recall(user=user, query="Where does Comet sleep?", limit=5)

    def scores(recalled: Any) -> dict[int, float]:
        return {i.id: i.text_rank for i in recalled.considered if i.text_position is not None}

    assert scores(before) == scores(after)
    assert max(scores(after), key=scores(after).__getitem__) == next(
        m.pk for m in Memory.objects.filter(user=user, content__startswith="Comet sleeps")
    )
    assert set(scores(after)) <= set(Memory.objects.filter(user=user).values_list("pk", flat=True))


def test_an_expired_memory_is_neither_recalled_nor_counted_by_bm25_unless_pinned(
    user: Any, settings: Any
) -> None:
    settings.MEMORY_MIN_SIMILARITY = -1.0  # random vectors: only the words decide here
    rng = np.random.default_rng(13)
    contents = ["Comet sleeps on the sofa.", "I went sailing.", "My sister visited in spring."]
    sofa = _store(user, contents, _unit(rng, len(contents)))[0]
    before = recall(user=user, query="Where does Comet sleep?", limit=5)
    # A memory that shares the words but has expired (found by the text index all the same).
    expired = _store(
        user,
        ["Comet sleeps in the garden."],
        _unit(rng, 1),
        expires_at=timezone.now() - timedelta(days=1),
    )[0]

    after = recall(user=user, query="Where does Comet sleep?", limit=5)

    def scores(recalled: Any) -> dict[int, float]:
        return {i.id: i.text_rank for i in recalled.considered if i.text_position is not None}

    assert expired.pk not in {i.id for i in after.considered}
    assert after.candidates == before.candidates == 3
    assert scores(after) == scores(before)  # neither its words nor its length counted
    Memory.objects.filter(pk=expired.pk).update(pinned=True)  # pinned: kept past its date

    pinned = recall(user=user, query="Where does Comet sleep?", limit=5)

    assert pinned.candidates == 4
    assert set(scores(pinned)) == {sofa.pk, expired.pk}
    # "comet" is now in 2 of 4 memories, not 1 of 3: a lower BM25 weight for the sofa.
    assert scores(pinned)[sofa.pk] < scores(before)[sofa.pk]


def test_a_time_named_in_the_message_brings_memories_of_that_time(user: Any, settings: Any) -> None:
    settings.MEMORY_MIN_SIMILARITY = -1.0
    rng = np.random.default_rng(13)
    days = [datetime(2023, month, 10, tzinfo=UTC) for month in (3, 5, 7, 9)]
    memories = [
        _store(user, [f"I went to the market {n}."], _unit(rng, 1), happened_at=day)[0]
        for n, day in enumerate(days)
    ]
    query = "What did I buy at the market in May 2023?"
    vector = list(_unit(rng, 1)[0])
    timed = RecallWeights(time=0.05)

    with_time = recall(user=user, query=query, embedding=vector, limit=4, weights=timed)
    without_time = recall(
        user=user, query=query, embedding=vector, limit=4, weights=RecallWeights(time=0.0)
    )
    undated = recall(
        user=user, query="What did I buy at the market?", embedding=vector, limit=4, weights=timed
    )

    assert with_time.memories[0].id == memories[1].pk
    assert [i.id for i in without_time.memories] == [i.id for i in undated.memories]


def test_period_in_reads_dates_months_seasons_and_relative_times() -> None:
    now = datetime(2024, 3, 20, 12, tzinfo=UTC)

    day = when.period_in("What movie did Joanna watch on 1 May, 2022?", now)
    month = when.period_in("Where did she travel to in July 2022?", now)
    season = when.period_in("Which state did she visit in summer 2021?", now)
    yesterday = when.period_in("What did I eat yesterday?", now)
    last_may = when.period_in("Where was I last May?", now)

    assert day and day.start == datetime(2022, 5, 1, tzinfo=UTC)
    assert day.end == datetime(2022, 5, 2, tzinfo=UTC) + when.TOLD_WITHIN
    assert month and month.start == datetime(2022, 7, 1, tzinfo=UTC)
    assert season and season.start == datetime(2021, 6, 1, tzinfo=UTC)
    assert season.end == datetime(2021, 9, 1, tzinfo=UTC) + when.TOLD_WITHIN
    assert yesterday and yesterday.start == datetime(2024, 3, 19, tzinfo=UTC)
    assert last_may and last_may.start == datetime(2023, 5, 1, tzinfo=UTC)
    assert when.period_in("What is my dog called?", now) is None
    impossible_day = when.period_in("It may rain on 31 February 2023", now)
    assert impossible_day and impossible_day.start == datetime(2023, 2, 1, tzinfo=UTC)


def test_a_recalled_memory_brings_the_one_learned_next_to_it(
    user: Any, other_user: Any, settings: Any
) -> None:
    settings.MEMORY_MIN_SIMILARITY = -1.0
    rng = np.random.default_rng(14)
    question, answer, noise, more_noise = _unit(rng, 4)
    # The answer says nothing like the question; two memories far from it in the
    # conversation resemble it more.
    far = question + noise
    unrelated = question + more_noise
    far, unrelated = far / np.linalg.norm(far), unrelated / np.linalg.norm(unrelated)
    stored = _store(
        user,
        [
            "Did you finally pick a name for the new puppy?",
            "Yes, after long debates.",
            "We bought a new lamp.",
            "I like tea.",
        ],
        np.stack([question, answer, far, unrelated]),
        source_conversation_id=7,
    )
    for memory, message in zip(stored, (100, 102, 140, 160), strict=True):
        Memory.objects.filter(pk=memory.pk).update(source_message_id=message)
    # Another person's memory with the same (plain) conversation and message ids: context is
    # the person's own conversation, never theirs.
    intruder = _store(
        other_user, ["Puppy names are hard."], answer[None, :], source_conversation_id=7
    )[0]
    Memory.objects.filter(pk=intruder.pk).update(source_message_id=101)

    asked = {"user": user, "query": "puppy name", "embedding": list(question), "limit": 2}
    with_context = recall(**asked, weights=RecallWeights(context=0.5))
    without_context = recall(**asked, weights=RecallWeights(context=0.0))

    ids = [i.id for i in with_context.considered]
    assert ids[:2] == [stored[0].pk, stored[1].pk]
    assert [i.id for i in without_context.considered][-1] == stored[1].pk
    assert intruder.pk not in ids


@pytest.mark.parametrize(
    "content",
    [
        "I live in Berlin.",
        "a",
        "Supercalifragilisticexpialidocious antidisestablishmentarianism",
        "one two three four five six seven eight nine ten eleven twelve",
        "Ich wohne in München und arbeite bei einer großen Firma.",
    ],
)
def test_token_counts_are_stored_at_write_time_as_the_prompt_counts_them(
    user: Any, content: str
) -> None:
    memory = _store(user, [content], _unit(np.random.default_rng(15), 1))[0]

    stored = Memory.objects.values_list("tokens", flat=True).get(pk=memory.pk)

    assert stored == llm.count_tokens(content)


def test_facts_learned_from_the_same_turn_let_recall_find_a_memory_by_their_words(
    user: Any, other_user: Any, settings: Any
) -> None:
    settings.MEMORY_MIN_SIMILARITY = -1.0
    rng = np.random.default_rng(16)
    memory, other = _store(user, ["I finally got the keys today.", "I like tea."], _unit(rng, 2))
    theirs = _store(other_user, ["I got the keys."], _unit(rng, 1))[0]
    vector = list(_unit(rng, 1)[0])

    enrich_recall_keys(
        user=user,
        memory_id=memory.pk,
        facts=[
            "I bought a flat in Lisbon.",
            "My password is hunter2",
            "i bought a flat in lisbon.",
        ],
    )
    enrich_recall_keys(user=user, memory_id=theirs.pk, facts=["I moved to Lisbon."])

    recalled = recall(user=user, query="Where is my flat in Lisbon?", embedding=vector, limit=2)
    stored = Memory.objects.get(pk=memory.pk)
    assert recalled.memories[0].id == memory.pk
    assert recalled.memories[0].text_position == 1
    assert "Lisbon" not in recalled.prompt_block()
    assert stored.recall_keys == "I bought a flat in Lisbon."  # no secret, no repeat
    assert Memory.objects.get(pk=theirs.pk).recall_keys == ""  # not the person's memory
    update_memory(user=user, memory_id=memory.pk, content="I got the keys yesterday.")
    assert Memory.objects.get(pk=memory.pk).recall_keys == ""
    assert other.pk not in [i.id for i in recalled.considered if i.text_position is not None]


def test_a_memory_with_more_words_than_an_index_entry_holds_is_kept_and_found_by_them(
    user: Any, other_user: Any, settings: Any
) -> None:
    # Recall's covering index holds fixed-size columns only; the text (here ~60 kB of recall
    # keys, far over btree's ~2.7 kB an entry) is reached through the GIN index instead.
    settings.MEMORY_MIN_SIMILARITY = -1.0
    rng = np.random.default_rng(17)
    keys = "\n".join(f"I visited place{i:05d} with zanzibarian friends." for i in range(1500))
    memory = _store(user, ["I travel a lot."], _unit(rng, 1), recall_keys=keys)[0]
    _store(user, ["I like tea."], _unit(rng, 1))
    _store(other_user, ["zanzibarian friends place00042"], _unit(rng, 1))

    recalled = recall(user=user, query="Who were my zanzibarian friends at place00042?", limit=2)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_length, length(search) FROM memory_memory WHERE id = %s", [memory.pk]
        )
        stored, computed = cursor.fetchone()
    assert stored == computed > 1500
    assert [i.id for i in recalled.considered if i.text_position is not None] == [memory.pk]


def test_the_query_vector_is_sent_as_each_component_formatted_with_7_significant_digits() -> None:
    from memory.services import vector_literal

    rng = np.random.default_rng(14)
    for vector in [
        list(_unit(rng, 1)[0]),
        [float(x) for x in rng.standard_normal(384).astype(np.float32)],
        [0.0, -0.0, 1e-30, -3.4e38, 0.1234567891, 1, 2.5e-7],
        [],
    ]:
        assert vector_literal(vector) == "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
