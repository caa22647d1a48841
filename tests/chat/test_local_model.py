"""Smoke test against the real local model server (llama.cpp + SmolLM2), as `make run` starts it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from chat import services
from chat.models import Message
from config import llm, stack


@pytest.fixture(scope="module")
def local_model() -> Iterator[str]:
    pytest.importorskip("llama_cpp", reason="`make test` installs the local model server")
    server = stack.LocalModelServer(
        model=stack.local_model_path(),
        log_path=stack.data_dir() / "test" / "llm.log",
        context_tokens=2048,
    )
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def use_local_model(local_model: str, settings: Any) -> None:
    settings.LLM_BASE_URL = local_model
    settings.LLM_CHAT_MODEL = stack.LOCAL_MODEL_ALIAS
    settings.LLM_BACKGROUND_MODEL = stack.LOCAL_MODEL_ALIAS
    settings.LLM_MAX_TOKENS = 48
    settings.LLM_READ_TIMEOUT = 120


@pytest.mark.django_db(transaction=True)
def test_a_reply_streams_from_the_local_model(use_local_model: None, user: Any) -> None:
    conversation = services.start_conversation(user=user)
    _, reply = services.send_message(
        user=user, conversation_id=conversation.pk, content="Say hello in one short sentence."
    )

    async def collect() -> tuple[list[str], Message | None]:
        tokens, final = [], None
        async for event in services.stream_reply(user=user, message_id=reply.pk):
            if event.kind == "token":
                tokens.append(event.text)
            else:
                final = event.message
        return tokens, final

    tokens, final = async_to_sync(collect)()
    assert final is not None
    assert final.status == Message.Status.COMPLETE, final.error
    assert len(tokens) > 1  # streamed in pieces, not one block
    assert final.content == "".join(tokens) and final.content.strip()
    assert final.completion_tokens > 0


def test_the_local_model_follows_a_json_schema(use_local_model: None) -> None:
    schema = {
        "type": "object",
        "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
        "required": ["facts"],
    }
    text = llm.complete(
        [{"role": "user", "content": "List facts about: I live in Paris. Answer in JSON."}],
        json_schema=schema,
        max_tokens=64,
    )
    data = json.loads(text)
    assert isinstance(data["facts"], list)


def test_the_local_model_is_listed_by_the_health_check(use_local_model: None) -> None:
    assert stack.LOCAL_MODEL_ALIAS in llm.list_models()
