"""The LLM gateway (config/llm.py) over HTTP against the fake OpenAI-compatible server."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync

from config import llm
from tests.fake_llm import FakeLLM

PROMPT = [{"role": "user", "content": "Say hello."}]


def _stream(
    messages: list[dict[str, str]] = PROMPT,
) -> tuple[list[llm.StreamDelta], Exception | None]:
    """Every delta `stream_chat` yields, and the exception that ended it (if any)."""

    async def collect() -> tuple[list[llm.StreamDelta], Exception | None]:
        deltas: list[llm.StreamDelta] = []
        try:
            async for delta in llm.stream_chat(messages):
                deltas.append(delta)
        except Exception as exc:
            return deltas, exc
        return deltas, None

    return async_to_sync(collect)()


# --- complete ---


def test_complete_returns_the_reply_text(fake_llm: FakeLLM) -> None:
    fake_llm.reply("Hello, person.")

    assert llm.complete(PROMPT) == "Hello, person."
    [request] = fake_llm.chat_requests
    assert request["messages"] == PROMPT
    assert request["model"] == "fake-small"
    assert "stream" not in request or request["stream"] is False


def test_complete_with_a_json_schema_asks_for_a_json_object(fake_llm: FakeLLM) -> None:
    schema = {"type": "object", "properties": {"facts": {"type": "array"}}}
    fake_llm.reply_json({"facts": []})

    answer = llm.complete(PROMPT, json_schema=schema)

    assert answer == '{"facts": []}'
    [request] = fake_llm.chat_requests
    assert request["response_format"] == {"type": "json_object", "schema": schema}


def test_complete_without_a_schema_sends_no_response_format(fake_llm: FakeLLM) -> None:
    llm.complete(PROMPT)

    assert "response_format" not in fake_llm.chat_requests[0]


def test_every_call_sends_max_tokens(fake_llm: FakeLLM, settings: Any) -> None:
    settings.LLM_MAX_TOKENS = 77

    llm.complete(PROMPT)
    llm.complete(PROMPT, max_tokens=24)
    _stream()

    assert [r["max_tokens"] for r in fake_llm.chat_requests] == [77, 24, 77]


def test_complete_retries_a_500_and_then_succeeds(fake_llm: FakeLLM, settings: Any) -> None:
    settings.LLM_MAX_RETRIES = 2
    fake_llm.fail(500)
    fake_llm.reply("Second try.")

    assert llm.complete(PROMPT) == "Second try."
    assert len(fake_llm.chat_requests) == 2


def test_complete_honours_retry_after_on_429_and_then_succeeds(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_MAX_RETRIES = 2
    fake_llm.fail(429, retry_after=0)
    fake_llm.reply("After the wait.")

    assert llm.complete(PROMPT) == "After the wait."
    assert len(fake_llm.chat_requests) == 2


def test_complete_raises_llm_error_once_retries_on_500_are_exhausted(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_MAX_RETRIES = 1
    fake_llm.fail(500)
    fake_llm.fail(500)
    fake_llm.reply("Too late.")

    with pytest.raises(llm.LLMError) as excinfo:
        llm.complete(PROMPT)

    # A 5xx is the server's failure: a type of its own, so tasks can retry it (not a 4xx),
    # with the same message for the person.
    assert excinfo.type is llm.LLMServerError
    assert "500" in str(excinfo.value)
    assert excinfo.value.message == llm.LLMError.message
    assert len(fake_llm.chat_requests) == 2


def test_complete_raises_rate_limited_once_retries_on_429_are_exhausted(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_MAX_RETRIES = 1
    fake_llm.fail(429, retry_after=0)
    fake_llm.fail(429, retry_after=0)

    with pytest.raises(llm.LLMRateLimited):
        llm.complete(PROMPT)

    assert len(fake_llm.chat_requests) == 2


def test_complete_does_not_retry_when_retries_are_off(fake_llm: FakeLLM) -> None:
    fake_llm.fail(503)
    fake_llm.reply("Never fetched.")

    with pytest.raises(llm.LLMError):
        llm.complete(PROMPT)

    assert len(fake_llm.chat_requests) == 1
    assert fake_llm.pending() == 1


def test_complete_raises_timeout_when_the_server_hangs(fake_llm: FakeLLM, settings: Any) -> None:
    settings.LLM_READ_TIMEOUT = 0.5
    fake_llm.hang(2)

    with pytest.raises(llm.LLMTimeout) as excinfo:
        llm.complete(PROMPT)

    assert excinfo.value.message == llm.LLMTimeout.message


def test_complete_raises_bad_response_on_malformed_json(fake_llm: FakeLLM) -> None:
    fake_llm.malformed()

    with pytest.raises(llm.LLMBadResponse):
        llm.complete(PROMPT)


def test_complete_raises_unavailable_when_no_base_url_is_set(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_BASE_URL = ""

    with pytest.raises(llm.LLMUnavailable):
        llm.complete(PROMPT)

    assert fake_llm.requests == []


def test_complete_raises_unavailable_when_the_server_cannot_be_reached(
    settings: Any,
) -> None:
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens

    with pytest.raises(llm.LLMUnavailable):
        llm.complete(PROMPT)


# --- stream_chat ---


def test_stream_chat_yields_the_tokens_in_order_and_then_the_usage(
    fake_llm: FakeLLM, settings: Any
) -> None:
    pieces = ["Hel", "lo", ", ", "there."]
    fake_llm.reply(
        "".join(pieces),
        tokens=pieces,
        usage={"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    )

    deltas, error = _stream()

    assert error is None
    assert [d.text for d in deltas if d.text] == pieces
    assert [d.usage for d in deltas if d.usage] == [llm.Usage(11, 4)]
    assert any(d.finish_reason == "stop" for d in deltas)
    [request] = fake_llm.chat_requests
    assert request["stream"] is True
    assert request["model"] == "fake-chat"
    assert request["stream_options"] == {"include_usage": True}


def test_stream_chat_never_retries(fake_llm: FakeLLM, settings: Any) -> None:
    settings.LLM_MAX_RETRIES = 2
    fake_llm.fail(500)
    fake_llm.reply("Never fetched.")

    deltas, error = _stream()

    assert isinstance(error, llm.LLMError)
    assert deltas == []
    assert len(fake_llm.chat_requests) == 1
    assert fake_llm.pending() == 1


def test_a_stream_cut_midway_is_reported_as_cut_off_not_unreachable(
    fake_llm: FakeLLM,
) -> None:
    fake_llm.cut_stream(3, "One two three four five.")

    deltas, error = _stream()

    assert [d.text for d in deltas] == ["One ", "two ", "three "]
    assert isinstance(error, llm.LLMStreamCut)
    assert "cut off" in error.message
    assert "could not be reached" not in error.message


def test_stream_chat_raises_timeout_when_the_server_hangs(fake_llm: FakeLLM, settings: Any) -> None:
    settings.LLM_READ_TIMEOUT = 0.5
    fake_llm.hang(2)

    deltas, error = _stream()

    assert deltas == []
    assert isinstance(error, llm.LLMTimeout)


def test_stream_chat_raises_unavailable_when_no_base_url_is_set(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_BASE_URL = ""

    deltas, error = _stream()

    assert deltas == []
    assert isinstance(error, llm.LLMUnavailable)
    assert fake_llm.requests == []


# --- count_tokens and list_models ---


def test_count_tokens_is_zero_only_for_empty_text() -> None:
    assert llm.count_tokens("") == 0
    assert llm.count_tokens("a") >= 1
    assert llm.count_tokens("Hello there, how are you today?") > 1


def test_count_tokens_grows_with_the_text() -> None:
    counts = [llm.count_tokens("word " * n) for n in (1, 5, 25, 125)]

    assert counts == sorted(counts)
    assert counts[0] < counts[-1]
    assert llm.count_tokens("x" * 400) >= 100  # long words still count by length


def test_list_models_returns_the_served_models(fake_llm: FakeLLM) -> None:
    assert llm.list_models() == ["fake-chat", "fake-small"]


def test_list_models_raises_unavailable_when_no_base_url_is_set(settings: Any) -> None:
    settings.LLM_BASE_URL = ""

    with pytest.raises(llm.LLMUnavailable):
        llm.list_models()


# --- chat and background endpoints ---


def test_background_work_goes_to_its_own_endpoint_and_chat_stays_on_the_chat_one(
    fake_llm: FakeLLM, settings: Any
) -> None:
    with FakeLLM() as background:
        settings.LLM_BACKGROUND_BASE_URL = background.base_url
        background.reply("A title")
        fake_llm.reply("Hello from chat.")

        assert llm.complete(PROMPT) == "A title"
        deltas, error = _stream()

        assert error is None
        assert "".join(d.text for d in deltas) == "Hello from chat."
        assert len(background.chat_requests) == 1
        assert len(fake_llm.chat_requests) == 1 and fake_llm.chat_requests[0]["stream"] is True


def test_without_a_background_endpoint_background_work_uses_the_chat_one(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.LLM_BACKGROUND_BASE_URL = ""
    fake_llm.reply("A title")
    assert llm.complete(PROMPT) == "A title"
    assert len(fake_llm.chat_requests) == 1
