"""Extraction: idempotent runs, paused and incognito, isolation, LLM failures, decisions, erasure.

The background model is the fake LLM over HTTP: its `responder` answers the extraction call
(a `response_format` schema with "facts") and the decision call (one with "decisions").
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection

from accounts.models import User
from chat import services as chat_services
from chat.models import Conversation, Message
from chat.tasks import extract_memories_task
from config import llm
from memory import extraction, services
from memory.models import ExtractionRun, Memory, MemoryEvent
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

PROPOSALS: dict[str, list[dict[str, str]]] = {
    "I'm Ada and I live in Paris.": [
        {"kind": "profile", "content": "My name is Ada"},
        {"kind": "profile", "content": "The user lives in Paris"},
    ],
    "I live in Paris.": [{"kind": "profile", "content": "I live in Paris"}],
    "I play squash on Sundays.": [{"kind": "fact", "content": "I play squash on Sundays"}],
    "These days I play squash on Sundays, I am learning Portuguese and I drink tea every "
    "morning.": [
        {"kind": "fact", "content": "I play squash on Sundays"},
        {"kind": "task", "content": "I am learning Portuguese"},
        {"kind": "fact", "content": "I drink tea every morning"},
    ],
}


def _schema_keys(request: dict[str, Any]) -> set[str]:
    schema = (request.get("response_format") or {}).get("schema") or {}
    return set(schema.get("properties", {}))


def _is_extraction(request: dict[str, Any]) -> bool:
    return "facts" in _schema_keys(request)


def _is_decision(request: dict[str, Any]) -> bool:
    return "decisions" in _schema_keys(request)


def _shown(text: str) -> dict[int, tuple[str, dict[str, int]]]:
    """The decision prompt as {number: (statement, {memory content shown: memory id})}."""
    shown: dict[int, tuple[str, dict[str, int]]] = {}
    number = 0
    for line in text.splitlines():
        if match := re.match(r"Statement (\d+): (.*)$", line):
            number = int(match.group(1))
            shown[number] = (match.group(2), {})
        elif match := re.match(r"\s+existing memory id=(\d+): (.*)$", line):
            shown[number][1][match.group(2)] = int(match.group(1))
    return shown


# What the decision model says about each statement: the action and the memory it names.
DECISIONS = {
    "I play squash on Sundays.": ("update", "I play tennis on Sundays."),
    "I am learning Portuguese.": ("add", None),
    "I drink tea every morning.": ("delete", "I drink coffee every morning."),
}


def responder(request: dict[str, Any]) -> str | dict[str, Any]:
    text = request["messages"][-1]["content"]
    if _is_extraction(request):
        return {"facts": PROPOSALS.get(text, [])}
    if _is_decision(request):
        decisions = []
        for number, (statement, memories) in _shown(text).items():
            action, target = DECISIONS.get(statement, ("add", None))
            memory_id = memories.get(target) if target else None
            decisions.append({"statement": number, "action": action, "memory_id": memory_id})
        return {"decisions": decisions}
    return "Noted."


@pytest.fixture(autouse=True)
def _scripted(fake_llm: FakeLLM) -> None:
    fake_llm.responder = responder


def _said(user: Any, text: str, *, incognito: bool = False) -> Message:
    conversation = chat_services.start_conversation(user=user, incognito=incognito)
    return Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.USER, content=text
    )


def _extract(user: Any, message: Message) -> ExtractionRun | None:
    return extraction.extract(
        user=user,
        text=message.content,
        source_message_id=message.pk,
        source_conversation_id=message.conversation_id,
    )


def _extraction_calls(fake_llm: FakeLLM) -> int:
    return sum(1 for r in fake_llm.chat_requests if _is_extraction(r))


def _decision_calls(fake_llm: FakeLLM) -> list[dict[str, Any]]:
    return [r for r in fake_llm.chat_requests if _is_decision(r)]


def _state(user: Any) -> list[tuple[Any, ...]]:
    return [
        *Memory.objects.filter(user=user)
        .order_by("id")
        .values_list("id", "kind", "content", "confirmations", "updated_at"),
        ("events", MemoryEvent.objects.filter(user=user).count()),
        ("runs", ExtractionRun.objects.filter(user=user).count()),
    ]


def _contents(user: Any) -> set[str]:
    return set(Memory.objects.filter(user=user).values_list("content", flat=True))


# --- Idempotency ---


def test_extracting_the_same_message_twice_adds_nothing_the_second_time(
    user: Any, fake_llm: FakeLLM
) -> None:
    message = _said(user, "I'm Ada and I live in Paris.")

    first = _extract(user, message)
    after_first = _state(user)
    second = _extract(user, message)

    assert first is not None and first.status == ExtractionRun.Status.DONE
    assert (first.candidates, first.added, first.llm_calls) == (2, 2, 1)
    assert _contents(user) == {"My name is Ada.", "I live in Paris."}
    assert second is None
    assert _state(user) == after_first
    assert _extraction_calls(fake_llm) == 1  # the second run did not even ask the model


def test_the_task_run_twice_on_one_message_learns_once(user: Any, fake_llm: FakeLLM) -> None:
    message = _said(user, "I'm Ada and I live in Paris.")

    extract_memories_task.apply(args=(message.pk,))
    after_first = _state(user)
    result = extract_memories_task.apply(args=(message.pk,))

    assert result.successful()
    assert _state(user) == after_first
    assert Memory.objects.filter(user=user).count() == 2
    assert ExtractionRun.objects.filter(source_message_id=message.pk).count() == 1
    assert _extraction_calls(fake_llm) == 1


def test_provenance_points_at_the_message_and_its_conversation(user: Any) -> None:
    message = _said(user, "I live in Paris.")

    _extract(user, message)

    memory = Memory.objects.get(user=user)
    assert (memory.source_message_id, memory.source_conversation_id) == (
        message.pk,
        message.conversation_id,
    )
    assert memory.source_excerpt == "I live in Paris."
    assert MemoryEvent.objects.get(memory_ref=memory.pk).actor == "extractor"


# --- Paused memory, incognito, not the person's words ---


def test_with_memory_paused_the_run_is_skipped_and_nothing_is_learned(
    user: Any, fake_llm: FakeLLM
) -> None:
    user.memory_enabled = False
    user.save()
    message = _said(user, "I'm Ada and I live in Paris.")

    run = chat_services.learn_from_message(message_id=message.pk)

    assert run is not None and run.status == ExtractionRun.Status.SKIPPED
    assert not Memory.objects.filter(user=user).exists()
    assert _extraction_calls(fake_llm) == 0


def test_an_incognito_message_teaches_nothing(user: Any, fake_llm: FakeLLM) -> None:
    message = _said(user, "I'm Ada and I live in Paris.", incognito=True)

    assert chat_services.learn_from_message(message_id=message.pk) is None

    assert not Memory.objects.filter(user=user).exists()
    assert not ExtractionRun.objects.exists()
    assert _extraction_calls(fake_llm) == 0


def test_an_assistant_message_or_a_missing_one_teaches_nothing(
    user: Any, fake_llm: FakeLLM
) -> None:
    message = _said(user, "I live in Paris.")
    reply = Message.objects.create(
        user=user,
        conversation=message.conversation,
        role=Message.Role.ASSISTANT,
        content="I live in Paris.",
    )

    assert chat_services.learn_from_message(message_id=reply.pk) is None
    assert chat_services.learn_from_message(message_id=reply.pk + 1000) is None
    assert not Memory.objects.exists()
    assert _extraction_calls(fake_llm) == 0


# --- Isolation ---


def test_learning_from_a_message_writes_only_to_its_author(user: Any, other_user: Any) -> None:
    theirs = _said(other_user, "I live in Paris.")

    chat_services.learn_from_message(message_id=theirs.pk)

    assert _contents(other_user) == {"I live in Paris."}
    assert not Memory.objects.filter(user=user).exists()
    assert ExtractionRun.objects.get(source_message_id=theirs.pk).user == other_user


def test_extraction_never_reconciles_with_another_persons_identical_memory(
    user: Any, other_user: Any
) -> None:
    services.remember(user=other_user, content="I live in Paris.", kind="profile")
    before = _state(other_user)

    run = _extract(user, _said(user, "I live in Paris."))

    # Against their own (empty) memory, the statement is new: added, not a duplicate.
    assert run is not None and (run.added, run.unchanged) == (1, 0)
    assert _contents(user) == {"I live in Paris."}
    assert _state(other_user) == before


def test_another_persons_similar_memory_is_never_shown_to_the_decision_model(
    user: Any, other_user: Any, fake_llm: FakeLLM
) -> None:
    services.remember(user=other_user, content="I play tennis on Sundays.")
    before = _state(other_user)

    run = _extract(user, _said(user, "I play squash on Sundays."))

    # Their memory is similar enough to need a decision; it is not theirs to decide on.
    assert _decision_calls(fake_llm) == []
    assert run is not None and run.added == 1
    assert _contents(user) == {"I play squash on Sundays."}
    assert _state(other_user) == before


# --- The model fails ---


@pytest.mark.parametrize(
    "script",
    [
        lambda fake: fake.reply("Sure! Nothing durable in there."),  # prose, no JSON
        lambda fake: fake.reply('{"facts": [{"kind": "fact", "content": "I li'),  # cut JSON
        lambda fake: fake.reply('["I live in Paris"]'),  # JSON, but not an object
        lambda fake: fake.malformed("{not json"),  # the HTTP body itself is not JSON
    ],
    ids=["prose", "truncated", "not-an-object", "malformed-body"],
)
def test_an_unreadable_reply_is_a_result_and_the_persons_own_statements_are_learned(
    user: Any, fake_llm: FakeLLM, script: Any
) -> None:
    # Not JSON is what a small model often answers: retrying would give the same, so the
    # run completes with what the person stated (the deterministic floor).
    message = _said(user, "I live in Paris.")
    script(fake_llm)

    run = _extract(user, message)

    assert run is not None and run.status == ExtractionRun.Status.DONE
    assert (run.added, run.llm_calls) == (1, 1)
    assert _contents(user) == {"I live in Paris."}
    assert _extraction_calls(fake_llm) == 1
    assert _extract(user, message) is None  # done: a redelivery changes nothing


def test_an_llm_500_raises_so_the_task_can_retry(user: Any, fake_llm: FakeLLM) -> None:
    message = _said(user, "I live in Paris.")
    fake_llm.fail(500)

    with pytest.raises(llm.LLMError):
        _extract(user, message)

    assert not ExtractionRun.objects.exists()


def test_the_task_retries_after_an_llm_500_and_then_learns(user: Any, fake_llm: FakeLLM) -> None:
    # Run eagerly, a Celery retry is executed at once (the backoff countdown is skipped), in
    # the same `apply()` call: the request count shows the retry, the run shows its success.
    message = _said(user, "I live in Paris.")
    fake_llm.fail(500)
    fake_llm.fail(503)

    result = extract_memories_task.apply(args=(message.pk,))

    assert result.successful()
    assert _extraction_calls(fake_llm) == 3
    run = ExtractionRun.objects.get(source_message_id=message.pk)
    assert run.status == ExtractionRun.Status.DONE and run.added == 1
    assert _contents(user) == {"I live in Paris."}


def test_the_task_gives_up_after_its_retries_without_recording_a_run(
    user: Any, fake_llm: FakeLLM
) -> None:
    message = _said(user, "I live in Paris.")
    attempts = (extract_memories_task.max_retries or 0) + 1
    assert attempts > 1
    for _ in range(attempts + 1):
        fake_llm.fail(500)

    result = extract_memories_task.apply(args=(message.pk,))

    assert result.failed()
    assert isinstance(result.result, llm.LLMError)
    assert _extraction_calls(fake_llm) == attempts
    # No run: the sweep of unlearned messages will enqueue it again later.
    assert not ExtractionRun.objects.exists()


# --- Reconciliation with the decision model ---


def test_several_ambiguous_statements_take_one_decision_call(user: Any, fake_llm: FakeLLM) -> None:
    tennis = services.remember(user=user, content="I play tennis on Sundays.")
    spanish = services.remember(user=user, content="I am learning Spanish.", kind="task")
    coffee = services.remember(user=user, content="I drink coffee every morning.")
    message = _said(
        user,
        "These days I play squash on Sundays, I am learning Portuguese and I drink tea every "
        "morning.",
    )

    run = _extract(user, message)

    decisions = _decision_calls(fake_llm)
    assert len(decisions) == 1
    prompt = decisions[0]["messages"][-1]["content"]
    assert sorted(_shown(prompt)) == [1, 2, 3]
    assert run is not None
    assert (run.candidates, run.llm_calls) == (3, 2)
    assert (run.updated, run.added, run.deleted) == (1, 1, 1)
    assert _contents(user) == {
        "I play squash on Sundays.",
        "I am learning Spanish.",
        "I am learning Portuguese.",
    }
    assert Memory.objects.get(pk=tennis.pk).content == "I play squash on Sundays."
    assert Memory.objects.filter(pk=spanish.pk).exists()
    deleted = MemoryEvent.objects.get(memory_ref=coffee.pk, action="deleted")
    # A contradicted fact is deleted: once a memory is deleted, by anyone, its words go.
    assert (deleted.actor, deleted.old_content) == ("extractor", "")
    assert deleted.source_message_id == message.pk


def test_a_decision_naming_a_memory_the_model_was_not_shown_adds_instead(
    user: Any, other_user: Any, fake_llm: FakeLLM
) -> None:
    mine = services.remember(user=user, content="I play tennis on Sundays.")
    theirs = services.remember(user=other_user, content="I play tennis on Sundays.")
    before = _state(other_user)

    def foreign_decision(request: dict[str, Any]) -> str | dict[str, Any]:
        if _is_decision(request):
            return {"decisions": [{"statement": 1, "action": "update", "memory_id": theirs.pk}]}
        return responder(request)

    fake_llm.responder = foreign_decision

    run = _extract(user, _said(user, "I play squash on Sundays."))

    assert len(_decision_calls(fake_llm)) == 1
    assert run is not None and (run.added, run.updated) == (1, 0)
    assert _contents(user) == {"I play tennis on Sundays.", "I play squash on Sundays."}
    assert Memory.objects.get(pk=mine.pk).content == "I play tennis on Sundays."
    assert _state(other_user) == before


def test_two_statements_updating_the_same_memory_keep_both(user: Any, fake_llm: FakeLLM) -> None:
    tennis = services.remember(user=user, content="I play tennis on Sundays.")
    services.remember(user=user, content="I am learning Spanish.", kind="task")
    services.remember(user=user, content="I drink coffee every morning.")

    def everything_updates_tennis(request: dict[str, Any]) -> str | dict[str, Any]:
        if not _is_decision(request):
            return responder(request)
        shown = _shown(request["messages"][-1]["content"])
        return {
            "decisions": [
                {"statement": n, "action": "update", "memory_id": tennis.pk} for n in shown
            ]
        }

    fake_llm.responder = everything_updates_tennis

    run = _extract(
        user,
        _said(
            user,
            "These days I play squash on Sundays, I am learning Portuguese and I drink tea "
            "every morning.",
        ),
    )

    # The first statement replaces the memory; the others would overwrite it, so are added.
    assert run is not None and (run.updated, run.added) == (1, 2)
    assert Memory.objects.get(pk=tennis.pk).content == "I play squash on Sundays."
    assert {"I am learning Portuguese.", "I drink tea every morning."} <= _contents(user)
    assert MemoryEvent.objects.filter(memory_ref=tennis.pk, action="updated").count() == 1


def test_an_unreadable_decision_adds_rather_than_overwrites(user: Any, fake_llm: FakeLLM) -> None:
    services.remember(user=user, content="I play tennis on Sundays.")

    def garbled_decision(request: dict[str, Any]) -> str | dict[str, Any]:
        return "I think you should update it." if _is_decision(request) else responder(request)

    fake_llm.responder = garbled_decision

    run = _extract(user, _said(user, "I play squash on Sundays."))

    assert run is not None and (run.added, run.updated, run.llm_calls) == (1, 0, 2)
    assert _contents(user) == {"I play tennis on Sundays.", "I play squash on Sundays."}


# --- Erasure during extraction ---


@pytest.mark.django_db(transaction=True)
def test_an_account_erased_while_the_model_thinks_gets_nothing_back(
    user: Any, fake_llm: FakeLLM
) -> None:
    message = _said(user, "I'm Ada and I live in Paris.")
    user_id = user.pk

    def erase_then_answer(request: dict[str, Any]) -> str | dict[str, Any]:
        if _is_extraction(request):
            # The person deletes their account while the LLM call is in flight (this runs in
            # the fake server's thread, on its own database connection).
            User.objects.filter(pk=user_id).delete()
            connection.close()
        return responder(request)

    fake_llm.responder = erase_then_answer

    run = _extract(user, message)

    assert run is None
    assert _extraction_calls(fake_llm) == 1
    assert not User.objects.filter(pk=user_id).exists()
    assert not Memory.objects.filter(user_id=user_id).exists()
    assert not MemoryEvent.objects.filter(user_id=user_id).exists()
    assert not ExtractionRun.objects.filter(user_id=user_id).exists()
    assert not Conversation.objects.filter(user_id=user_id).exists()


def test_recording_for_an_erased_account_writes_nothing(user: Any) -> None:
    message = _said(user, "I live in Paris.")
    user_id = user.pk
    outcome = extraction.Outcome(candidates=1)
    candidate = extraction.Candidate(kind="profile", content="I live in Paris.")
    candidate.embedding = [0.0] * 383 + [1.0]
    plans = [extraction.Plan("add", candidate)]
    User.objects.filter(pk=user_id).delete()

    run = extraction._record(
        user, message.pk, ExtractionRun.Status.DONE, outcome, plans, excerpt=message.content
    )

    assert run is None
    assert not Memory.objects.filter(user_id=user_id).exists()
    assert not ExtractionRun.objects.filter(user_id=user_id).exists()
    assert not MemoryEvent.objects.filter(user_id=user_id).exists()


# --- Recall keys shared by a turn's memories ---


def test_memories_learned_from_one_turn_are_found_by_each_others_words(
    user: Any, settings: Any
) -> None:
    settings.MEMORY_MIN_SIMILARITY = -1.0
    message = _said(
        user,
        "These days I play squash on Sundays, I am learning Portuguese and I drink tea every "
        "morning.",
    )

    _extract(user, message)

    keys = dict(Memory.objects.filter(user=user).values_list("content", "recall_keys"))
    assert keys["I play squash on Sundays."].splitlines() == [
        "I am learning Portuguese.",
        "I drink tea every morning.",
    ]
    assert "I play squash on Sundays." in keys["I am learning Portuguese."].splitlines()
    # Found by a word only its sibling holds; the prompt still shows only its own text.
    squash = Memory.objects.get(user=user, content="I play squash on Sundays.")
    recalled = services.recall(user=user, query="Portuguese", limit=3)
    found = {item.id: item for item in recalled.considered}
    assert found[squash.pk].text_position is not None
    assert "Portuguese" not in next(
        line for line in recalled.prompt_block().splitlines() if "squash" in line
    )


def test_a_memory_alone_in_its_turn_gets_no_recall_keys(user: Any) -> None:
    _extract(user, _said(user, "I play squash on Sundays."))

    assert list(Memory.objects.filter(user=user).values_list("recall_keys", flat=True)) == [""]
