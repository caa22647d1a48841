"""Background work is bounded: transport failures retry with a cap, answers never do, and the
sweeps never enqueue work that is already queued or running."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_redis import get_redis_connection
from kombu.exceptions import OperationalError

from chat import services as chat_services
from chat import tasks
from chat.models import Conversation, Message
from memory.models import ExtractionRun
from tests.conftest import WorkerProcess
from tests.fake_llm import FakeLLM


def _said(user: Any, text: str, *, minutes_ago: float = 5) -> Message:
    conversation = chat_services.start_conversation(user=user)
    return Message.objects.create(
        user=user,
        conversation=conversation,
        role=Message.Role.USER,
        content=text,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def _is_extraction(request: dict[str, Any]) -> bool:
    schema = (request.get("response_format") or {}).get("schema") or {}
    return "facts" in schema.get("properties", {})


def _extraction_calls(fake_llm: FakeLLM) -> list[str]:
    return [r["messages"][-1]["content"] for r in fake_llm.chat_requests if _is_extraction(r)]


def _queued() -> int:
    """Messages waiting in the broker's default queue (Redis list `celery`)."""
    return int(get_redis_connection("default").llen("celery"))


def _claimed(task: Any, object_id: int) -> bool:
    return cache.get(tasks.claim_key(task.name, object_id)) is not None


# --- Retries: transport failures only, with a cap ---


@pytest.mark.django_db
@pytest.mark.parametrize(
    "script",
    [
        lambda fake: fake.reply("Sure! Nothing durable in there."),
        lambda fake: fake.reply('{"facts": [{"kind": "fact", "content": "I li'),
        lambda fake: fake.malformed("{not json"),
    ],
    ids=["prose", "truncated-json", "malformed-body"],
)
def test_an_answer_that_is_not_json_is_a_result_not_a_retry(
    user: Any, fake_llm: FakeLLM, script: Any
) -> None:
    message = _said(user, "I live in Paris.")
    script(fake_llm)

    result = tasks.extract_memories_task.apply(args=(message.pk,))

    assert result.successful()
    assert _extraction_calls(fake_llm) == ["I live in Paris."]  # asked once
    run = ExtractionRun.objects.get(source_message_id=message.pk)
    assert run.status == ExtractionRun.Status.DONE


@pytest.mark.django_db
def test_a_refused_request_is_not_retried(user: Any, fake_llm: FakeLLM) -> None:
    message = _said(user, "I live in Paris.")
    fake_llm.fail(400)

    result = tasks.extract_memories_task.apply(args=(message.pk,))

    assert result.failed()
    assert len(_extraction_calls(fake_llm)) == 1


@pytest.mark.django_db
def test_transport_failures_are_retried_then_the_task_learns(
    user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_READ_TIMEOUT = 0.3
    message = _said(user, "I live in Paris.")
    fake_llm.fail(503)
    fake_llm.fail(429)
    fake_llm.hang(2)

    result = tasks.extract_memories_task.apply(args=(message.pk,))

    assert result.successful()
    assert len(_extraction_calls(fake_llm)) == 4
    assert ExtractionRun.objects.get(source_message_id=message.pk).added == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "task",
    [tasks.extract_memories_task, tasks.generate_title_task, tasks.summarize_conversation_task],
)
def test_every_llm_task_gives_up_after_a_capped_number_of_attempts(
    user: Any, fake_llm: FakeLLM, task: Any
) -> None:
    message = _said(user, "I live in Paris.")
    Message.objects.create(
        user=user,
        conversation=message.conversation,
        role=Message.Role.ASSISTANT,
        content="Paris is lovely.",
        status=Message.Status.COMPLETE,
    )
    Conversation.objects.filter(pk=message.conversation_id).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    arg = message.pk if task is tasks.extract_memories_task else message.conversation_id
    for _ in range(20):
        fake_llm.fail(503)

    result = task.apply(args=(arg,))

    assert result.failed()
    assert 1 < len(fake_llm.chat_requests) == task.max_retries + 1 <= 5


# --- Claims: the sweeps never add a copy of queued work ---


@pytest.mark.django_db
def test_enqueueing_claims_the_message_and_finishing_releases_it(user: Any) -> None:
    message = _said(user, "I live in Paris.")

    tasks.extract_memories_task.delay(message.pk)

    assert _claimed(tasks.extract_memories_task, message.pk)
    assert _queued() == 1
    tasks.extract_memories_task.apply(args=(message.pk,))  # what the worker will do
    assert not _claimed(tasks.extract_memories_task, message.pk)


@pytest.mark.django_db
def test_the_sweep_never_enqueues_an_extraction_that_is_already_queued(user: Any) -> None:
    # A backlog: five turns whose extractions wait in the broker behind a busy (here: no)
    # worker for longer than the sweep's two minutes.
    messages = [_said(user, f"I have {n} cats.") for n in range(5)]
    for message in messages:
        tasks.extract_memories_task.delay(message.pk)
    assert _queued() == 5

    for _ in range(3):  # three sweeps while the backlog waits
        assert tasks.sweep_unlearned_messages_task.apply().get() == 0
    assert _queued() == 5

    # A message lost with a crashed Redis has no claim either: the sweep enqueues it, once.
    lost = _said(user, "I live in Paris.")
    assert tasks.sweep_unlearned_messages_task.apply().get() == 1
    assert _claimed(tasks.extract_memories_task, lost.pk)
    assert tasks.sweep_unlearned_messages_task.apply().get() == 0
    assert _queued() == 6


@pytest.mark.django_db
def test_an_enqueue_the_broker_refuses_leaves_no_claim(user: Any, settings: Any) -> None:
    from config.celery import app

    message = _said(user, "I live in Paris.")
    old = app.conf.broker_url
    app.conf.update(broker_url="redis://127.0.0.1:1/0", broker_connection_retry=False)
    try:
        with app.connection_for_write() as conn, pytest.raises(OperationalError):
            tasks.extract_memories_task.apply_async(
                args=(message.pk,), connection=conn, retry=False
            )
    finally:
        app.conf.update(broker_url=old)
    assert not _claimed(tasks.extract_memories_task, message.pk)
    assert tasks.sweep_unlearned_messages_task.apply().get() == 1  # the sweep picks it up


@pytest.mark.django_db
def test_the_summary_sweep_never_enqueues_a_summary_that_is_already_queued(
    user: Any, settings: Any
) -> None:
    settings.SUMMARY_IDLE_MINUTES = 1
    message = _said(user, "I live in Paris.")
    Message.objects.create(
        user=user,
        conversation=message.conversation,
        role=Message.Role.ASSISTANT,
        content="Paris is lovely.",
        status=Message.Status.COMPLETE,
    )
    Message.objects.filter(pk=message.pk).update(status=Message.Status.COMPLETE)
    Conversation.objects.filter(pk=message.conversation_id).update(
        updated_at=timezone.now() - timedelta(minutes=5)
    )

    assert tasks.sweep_summaries_task.apply().get() == 1
    assert tasks.sweep_summaries_task.apply().get() == 0
    assert _queued() == 1


@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_learned_once_each_when_a_worker_comes(
    worker_env: dict[str, str], fake_llm: FakeLLM, user: Any
) -> None:
    fake_llm.responder = lambda request: {"facts": []} if _is_extraction(request) else "Noted."
    messages = [_said(user, f"I have {n} cats.") for n in range(4)]
    for message in messages:
        tasks.extract_memories_task.delay(message.pk)
    for _ in range(3):
        tasks.sweep_unlearned_messages_task.apply()

    worker = WorkerProcess(worker_env, name="backlog").start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ExtractionRun.objects.filter(user=user).count() == len(messages) and not _queued():
                break
            time.sleep(0.2)
    finally:
        worker.stop()

    assert ExtractionRun.objects.filter(user=user).count() == len(messages)
    assert sorted(_extraction_calls(fake_llm)) == sorted(m.content for m in messages)
    assert not any(_claimed(tasks.extract_memories_task, m.pk) for m in messages)
    assert tasks.sweep_unlearned_messages_task.apply().get() == 0
