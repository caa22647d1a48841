"""Nothing lost: a killed worker's extraction completes after a restart; the sweep re-enqueues.

Real Celery workers (subprocesses) against the test database and Redis; the fake LLM over HTTP.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_redis import get_redis_connection

from chat import services as chat_services
from chat.models import Message
from chat.tasks import extract_memories_task, sweep_unlearned_messages_task
from memory.models import ExtractionRun, Memory
from tests.conftest import WorkerProcess
from tests.factories import UserFactory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db(transaction=True)

# Seconds after which Redis (kombu) hands an unacknowledged task to another worker. Production
# keeps an hour, longer than any task; the test cannot wait that long.
VISIBILITY_TIMEOUT = 3

FACTS = {
    "I live in Paris.": [{"kind": "profile", "content": "I live in Paris"}],
    "I'm Ada.": [{"kind": "profile", "content": "My name is Ada"}],
    "I have a cat named Miso.": [{"kind": "fact", "content": "I have a cat named Miso"}],
    "I play the cello.": [{"kind": "fact", "content": "I play the cello"}],
    "I speak Greek.": [{"kind": "profile", "content": "I speak Greek"}],
}


def _is_extraction(request: dict[str, Any]) -> bool:
    schema = (request.get("response_format") or {}).get("schema") or {}
    return "facts" in schema.get("properties", {})


def responder(request: dict[str, Any]) -> str | dict[str, Any]:
    if _is_extraction(request):
        return {"facts": FACTS.get(request["messages"][-1]["content"], [])}
    return "Noted."


def _said(user: Any, text: str, *, incognito: bool = False, minutes_ago: float = 0) -> Message:
    conversation = chat_services.start_conversation(user=user, incognito=incognito)
    return Message.objects.create(
        user=user,
        conversation=conversation,
        role=Message.Role.USER,
        content=text,
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def _wait_for_run(message: Message, timeout: float = 120) -> ExtractionRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ExtractionRun.objects.filter(source_message_id=message.pk).first()
        if run is not None:
            return run
        time.sleep(0.1)
    raise AssertionError(f"no extraction ran for message {message.pk}: {message.content!r}")


def _wait_until_redeliverable(timeout: float = 30) -> None:
    """Wait until the dead worker's unacknowledged task is older than the visibility timeout.

    kombu keeps each delivered, unacknowledged message in the `unacked` hash, indexed by
    delivery time in `unacked_index`; a consumer's `restore_visible` (run when a worker
    starts, then every 10 s: settings' unacked_restore_*) puts back the ones older than its
    visibility timeout.
    """
    redis = get_redis_connection("default")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivered = redis.zrange("unacked_index", 0, -1, withscores=True)
        if delivered and time.time() - max(score for _, score in delivered) > VISIBILITY_TIMEOUT:
            return
        time.sleep(0.1)
    raise AssertionError("the killed worker left no unacknowledged task behind")


def test_a_killed_workers_extraction_completes_after_a_restart(
    worker_env: dict[str, str], fake_llm: FakeLLM, user: Any
) -> None:
    env = {**worker_env, "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}
    in_flight = threading.Event()
    release = threading.Event()
    extraction_calls: list[str] = []

    def slow_the_first_time(request: dict[str, Any]) -> str | dict[str, Any]:
        if _is_extraction(request):
            extraction_calls.append(request["messages"][-1]["content"])
            if len(extraction_calls) == 1:
                in_flight.set()
                release.wait(60)  # the worker is killed while it waits for this answer
        return responder(request)

    fake_llm.responder = slow_the_first_time
    message = _said(user, "I live in Paris.")
    first = WorkerProcess(env, name=f"doomed-{os.getpid()}").start()
    second = WorkerProcess(env, name=f"restarted-{os.getpid()}")
    try:
        extract_memories_task.delay(message.pk)
        assert fake_llm.wait_for(in_flight.is_set, timeout=60), "the task never reached the LLM"

        first.kill()
        release.set()
        assert not ExtractionRun.objects.filter(source_message_id=message.pk).exists()
        _wait_until_redeliverable()
        second.start()

        run = _wait_for_run(message)
    finally:
        release.set()
        first.stop()
        second.stop()

    assert run.status == ExtractionRun.Status.DONE and run.added == 1
    assert list(Memory.objects.filter(user=user).values_list("content", flat=True)) == [
        "I live in Paris."
    ]
    assert extraction_calls == ["I live in Paris.", "I live in Paris."]  # once each worker


def test_the_sweep_re_enqueues_a_lost_extraction_and_the_worker_learns_it(
    celery_worker: Any, fake_llm: FakeLLM, user: Any
) -> None:
    fake_llm.responder = responder
    paused: Any = UserFactory(memory_enabled=False)
    lost = _said(user, "I live in Paris.", minutes_ago=5)
    recent = _said(user, "I'm Ada.")  # its own task may still be queued: not yet the sweep's
    incognito = _said(user, "I have a cat named Miso.", incognito=True, minutes_ago=5)
    from_paused = _said(paused, "I play the cello.", minutes_ago=5)
    learned = _said(user, "I speak Greek.", minutes_ago=5)
    ExtractionRun.objects.create(
        user=user, source_message_id=learned.pk, status=ExtractionRun.Status.DONE
    )

    enqueued = sweep_unlearned_messages_task.apply().get()

    assert enqueued == 1
    run = _wait_for_run(lost)
    assert run.status == ExtractionRun.Status.DONE and run.added == 1
    assert list(Memory.objects.filter(user=user).values_list("content", flat=True)) == [
        "I live in Paris."
    ]
    assert not ExtractionRun.objects.filter(
        source_message_id__in=[recent.pk, incognito.pk, from_paused.pk]
    ).exists()
    assert not Memory.objects.filter(user=paused).exists()
    extraction_requests = [r for r in fake_llm.chat_requests if _is_extraction(r)]
    assert [r["messages"][-1]["content"] for r in extraction_requests] == ["I live in Paris."]
