"""The fake OpenAI-compatible server behaves like the real API, failures included."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fake_llm import DEFAULT_REPLY, FakeLLM, iter_sse_data, split_tokens

USER_MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there fake"}]


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def client(fake_llm: FakeLLM) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=fake_llm.base_url, api_key="x", max_retries=0, timeout=5.0)
    yield sdk
    sdk.close()


@pytest.fixture
def http(fake_llm: FakeLLM) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_llm.base_url, timeout=5.0) as raw:
        yield raw


def _chat_body(**extra: object) -> dict[str, object]:
    return {"model": "fake-chat", "messages": USER_MSG, **extra}


# --------------------------------------------------------------------------- chat


def test_plain_reply_via_sdk_has_content_model_and_usage(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.reply("Two words here")
    completion = client.chat.completions.create(model="my-model", messages=USER_MSG)

    assert completion.object == "chat.completion"
    assert completion.model == "my-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Two words here"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == 6


def test_plain_reply_via_httpx_is_openai_shaped_json(fake_llm: FakeLLM, http: httpx.Client) -> None:
    fake_llm.reply(
        "raw hello", usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    )
    response = http.post("/chat/completions", json=_chat_body())

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "raw hello",
        "refusal": None,
    }
    assert data["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def test_streamed_reply_arrives_token_by_token(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    tokens = ["Hel", "lo", ",", " wor", "ld", "!"]
    fake_llm.reply("Hello, world!", tokens=tokens)

    chunks = list(client.chat.completions.create(model="fake-chat", messages=USER_MSG, stream=True))

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content is not None]
    assert [c.choices[0].delta.content for c in content_chunks] == tokens
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in content_chunks[1:])
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].delta.content is None
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_streamed_reply_default_tokens_are_words_with_trailing_spaces(
    fake_llm: FakeLLM, http: httpx.Client
) -> None:
    fake_llm.reply("one two  three")
    with http.stream("POST", "/chat/completions", json=_chat_body(stream=True)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        payloads = list(iter_sse_data(response.iter_lines()))

    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    contents = [e["choices"][0]["delta"].get("content") for e in events]
    assert contents == ["one ", "two  ", "three", None]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    # No usage chunk unless the client asked for one.
    assert all(e["choices"] for e in events)
    assert split_tokens("one two  three") == ["one ", "two  ", "three"]


def test_usage_chunk_sent_when_include_usage_requested(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.reply("alpha beta gamma")
    chunks = list(
        client.chat.completions.create(
            model="fake-chat",
            messages=USER_MSG,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == 3
    assert usage_chunk.usage.completion_tokens == 3
    assert usage_chunk.usage.total_tokens == 6
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])


def test_json_object_reply_is_parseable_json(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    fact = {"facts": [{"text": "likes tea", "confidence": 0.9}], "count": 1}
    fake_llm.reply_json(fact)

    completion = client.chat.completions.create(
        model="fake-chat",
        messages=USER_MSG,
        response_format={"type": "json_object"},
    )

    assert json.loads(completion.choices[0].message.content or "") == fact
    assert fake_llm.chat_requests[-1]["response_format"] == {"type": "json_object"}


def test_empty_queue_falls_back_to_default_reply(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    fake_llm.reply("scripted first")

    first = client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    second = client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    fake_llm.default_reply = "Custom default."
    third = client.chat.completions.create(model="fake-chat", messages=USER_MSG)

    assert first.choices[0].message.content == "scripted first"
    assert second.choices[0].message.content == DEFAULT_REPLY
    assert third.choices[0].message.content == "Custom default."


def test_scripted_responses_are_consumed_in_fifo_order(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.fail(503)
    fake_llm.reply("after the failure")
    assert fake_llm.pending() == 2

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    ok = client.chat.completions.create(model="fake-chat", messages=USER_MSG)

    assert ok.choices[0].message.content == "after the failure"
    assert fake_llm.pending() == 0


# ------------------------------------------------------------------------- errors


def test_rate_limit_with_retry_after_raises_rate_limit_error(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.fail(429, retry_after=3)

    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model="fake-chat", messages=USER_MSG)

    err = excinfo.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "3"
    assert err.code == "rate_limit_exceeded"
    assert err.type == "rate_limit_exceeded"


def test_rate_limit_retry_after_header_visible_over_raw_http(
    fake_llm: FakeLLM, http: httpx.Client
) -> None:
    fake_llm.fail(429, retry_after=1.5)
    response = http.post("/chat/completions", json=_chat_body())

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1.5"
    assert set(response.json()["error"]) >= {"message", "type", "code"}


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_raise_internal_server_error(
    fake_llm: FakeLLM, client: openai.OpenAI, status: int
) -> None:
    fake_llm.fail(status)

    with pytest.raises(openai.InternalServerError) as excinfo:
        client.chat.completions.create(model="fake-chat", messages=USER_MSG)

    assert excinfo.value.status_code == status
    assert excinfo.value.type == "server_error"


def test_custom_error_bodies_are_sent_verbatim(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    custom = {
        "error": {"message": "context too long", "type": "invalid_request_error", "code": "ctx"}
    }
    fake_llm.fail(400, body=custom)
    fake_llm.fail(502, body="upstream exploded")

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    with pytest.raises(openai.InternalServerError) as gateway:
        client.chat.completions.create(model="fake-chat", messages=USER_MSG)

    assert bad.value.code == "ctx"
    assert "context too long" in bad.value.message
    assert gateway.value.status_code == 502
    assert gateway.value.response.text == "upstream exploded"


def test_hang_past_client_timeout_raises_api_timeout_error(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.hang(30)  # the fixture's stop() wakes it up at teardown

    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(
            model="fake-chat",
            messages=USER_MSG,
        )

    # Other requests are served while that one is still hanging.
    ok = client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    assert ok.choices[0].message.content == DEFAULT_REPLY


def test_hang_answers_normally_afterwards_even_if_client_left(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.hang(0.6)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).chat.completions.create(
            model="fake-chat",
            messages=USER_MSG,
        )
    time.sleep(0.6)  # let the hung handler wake up and write into the closed socket

    # A patient client gets the normal (default) answer after the hang.
    fake_llm.hang(0.1)
    late = client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    assert late.choices[0].message.content == DEFAULT_REPLY
    assert len(fake_llm.chat_requests) == 2


def test_malformed_json_makes_sdk_raise_json_decode_error(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    # Surprise: the SDK does not wrap this in an openai.APIError; the raw
    # json.JSONDecodeError (a ValueError) escapes from the call.
    fake_llm.malformed()

    with pytest.raises(json.JSONDecodeError) as excinfo:
        client.chat.completions.create(model="fake-chat", messages=USER_MSG)

    assert not isinstance(excinfo.value, openai.OpenAIError)
    assert excinfo.value.doc == "{not json"


def test_malformed_json_over_raw_http_is_200_with_json_content_type(
    fake_llm: FakeLLM, http: httpx.Client
) -> None:
    fake_llm.malformed('{"choices": [')
    response = http.post("/chat/completions", json=_chat_body())

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text == '{"choices": ['
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_cut_stream_gives_first_tokens_then_api_connection_error(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.cut_stream(2, "never gets to the end")
    received: list[str | None] = []
    finish_reasons: list[str | None] = []

    stream = client.chat.completions.create(model="fake-chat", messages=USER_MSG, stream=True)
    with pytest.raises(openai.APIConnectionError) as excinfo:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
            finish_reasons.append(chunk.choices[0].finish_reason)

    assert received == ["never ", "gets "]
    assert finish_reasons == [None, None]
    assert not isinstance(excinfo.value, openai.APITimeoutError)
    # The SDK transports over its own `httpx2` package, so the cause is
    # httpx2.RemoteProtocolError, not httpx.RemoteProtocolError.
    cause = excinfo.value.__cause__
    assert type(cause).__name__ == "RemoteProtocolError"
    assert "incomplete chunked read" in str(cause)


def test_cut_stream_over_raw_http_has_no_done_and_raises_protocol_error(
    fake_llm: FakeLLM, http: httpx.Client
) -> None:
    fake_llm.cut_stream(3, tokens=["a", "b", "c", "d", "e"])
    payloads: list[str] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/chat/completions", json=_chat_body(stream=True)) as response,
    ):
        payloads.extend(iter_sse_data(response.iter_lines()))

    assert "[DONE]" not in payloads
    assert [json.loads(p)["choices"][0]["delta"]["content"] for p in payloads] == ["a", "b", "c"]


def test_cut_non_streamed_reply_raises_api_connection_error(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.cut_stream(1)

    with pytest.raises(openai.APIConnectionError) as excinfo:
        client.chat.completions.create(model="fake-chat", messages=USER_MSG)

    cause = excinfo.value.__cause__
    assert type(cause).__name__ == "RemoteProtocolError"
    assert "received" in str(cause)
    assert "expected" in str(cause)


def test_client_disconnect_mid_stream_is_counted(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    fake_llm.reply("x " * 500, delay=0.01)
    received: list[str | None] = []

    stream = client.chat.completions.create(model="fake-chat", messages=USER_MSG, stream=True)
    with stream:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
            if len(received) == 2:
                break  # leaving the block closes the upstream connection

    assert received == ["x ", "x "]
    assert fake_llm.wait_for_disconnects(1, timeout=5.0)
    assert fake_llm.disconnects == 1


def test_complete_stream_counts_no_disconnect(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    fake_llm.reply("all of it arrives", delay=0.01)
    stream = client.chat.completions.create(model="fake-chat", messages=USER_MSG, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream)

    assert text == "all of it arrives"
    assert fake_llm.disconnects == 0


# --------------------------------------------------------------------- embeddings


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_embeddings_are_deterministic_unit_vectors(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    first = client.embeddings.create(model="fake-embed", input=["tea", "coffee", "tea"])
    again = client.embeddings.create(model="fake-embed", input="tea")

    tea, coffee, tea_twice = (d.embedding for d in first.data)
    assert [d.index for d in first.data] == [0, 1, 2]
    assert len(tea) == 384
    assert tea == tea_twice == again.data[0].embedding
    assert tea != coffee
    assert _norm(tea) == pytest.approx(1.0, abs=1e-5)
    assert _norm(coffee) == pytest.approx(1.0, abs=1e-5)
    assert first.usage.prompt_tokens == 3


def test_embeddings_float_and_base64_encodings_agree(
    fake_llm: FakeLLM, client: openai.OpenAI, http: httpx.Client
) -> None:
    # The SDK asks for base64 by default and decodes it; raw clients get float lists.
    via_sdk = client.embeddings.create(model="fake-embed", input="same text").data[0].embedding
    raw = http.post("/embeddings", json={"model": "fake-embed", "input": "same text"}).json()

    assert fake_llm.embedding_requests[0]["encoding_format"] == "base64"
    assert raw["object"] == "list"
    assert raw["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert via_sdk == pytest.approx(raw["data"][0]["embedding"], abs=1e-6)


def test_embeddings_honour_dimensions_and_embedding_dim(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    small = client.embeddings.create(model="fake-embed", input="hi", dimensions=64)
    fake_llm.embedding_dim = 16
    default_changed = client.embeddings.create(model="fake-embed", input="hi")

    assert len(small.data[0].embedding) == 64
    assert _norm(small.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert len(default_changed.data[0].embedding) == 16


def test_embedding_errors_are_scripted_on_their_own_queue(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.fail(503, endpoint="embeddings")
    fake_llm.malformed(endpoint="embeddings")

    chat = client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="fake-embed", input="x")
    with pytest.raises(json.JSONDecodeError):
        client.embeddings.create(model="fake-embed", input="x")
    ok = client.embeddings.create(model="fake-embed", input="x")

    assert chat.choices[0].message.content == DEFAULT_REPLY
    assert len(ok.data[0].embedding) == 384


# ------------------------------------------------------------------------- models


def test_models_endpoint_lists_models(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["fake-chat", "fake-small"]

    fake_llm.models = ["only-one"]
    models = list(client.models.list())
    assert [(m.id, m.object, m.owned_by) for m in models] == [("only-one", "model", "fake")]


def test_models_endpoint_failures_are_scriptable(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    fake_llm.fail(401, endpoint="models")

    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert [m.id for m in client.models.list()] == ["fake-chat", "fake-small"]


# ---------------------------------------------------------- recording and routing


def test_requests_are_recorded_with_bodies(fake_llm: FakeLLM, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="fake-small", messages=USER_MSG, temperature=0.2)
    client.models.list()

    recorded = fake_llm.requests
    assert [(r.method, r.path) for r in recorded] == [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]
    assert recorded[0].headers["authorization"] == "Bearer x"
    assert recorded[0].json == {"model": "fake-small", "messages": USER_MSG, "temperature": 0.2}
    assert recorded[1].json is None
    assert fake_llm.chat_requests == [recorded[0].json]


def test_reset_clears_queues_and_recorded_requests(
    fake_llm: FakeLLM, client: openai.OpenAI
) -> None:
    fake_llm.reply("queued but never used")
    fake_llm.fail(500, endpoint="embeddings")
    client.models.list()

    fake_llm.reset()

    assert fake_llm.requests == []
    assert fake_llm.pending("chat") == 0
    assert fake_llm.pending("embeddings") == 0
    reply = client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    assert reply.choices[0].message.content == DEFAULT_REPLY


def test_unknown_path_returns_openai_style_404(fake_llm: FakeLLM, http: httpx.Client) -> None:
    response = http.post("/completions", json={"model": "fake-chat", "prompt": "hi"})

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "/v1/completions" in response.json()["error"]["message"]
    assert fake_llm.requests[-1].path == "/v1/completions"


def test_bad_json_request_body_returns_400_without_consuming_the_queue(
    fake_llm: FakeLLM, http: httpx.Client
) -> None:
    fake_llm.reply("still queued")
    response = http.post(
        "/chat/completions", content=b"{oops", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fake_llm.pending() == 1
    assert fake_llm.requests[-1].json is None
    assert fake_llm.requests[-1].raw_body == b"{oops"
    assert fake_llm.chat_requests == []


def test_enqueueing_for_an_unknown_endpoint_is_rejected(fake_llm: FakeLLM) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        fake_llm.fail(500, endpoint="completions")
    with pytest.raises(ValueError, match="chat"):
        fake_llm.reply("x", endpoint="embeddings")


def test_base_url_points_at_a_local_os_chosen_port(fake_llm: FakeLLM) -> None:
    assert fake_llm.port > 0
    assert fake_llm.base_url == f"http://127.0.0.1:{fake_llm.port}/v1"
    fake_llm.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{fake_llm.port}/v1/models", timeout=1.0)


def test_no_handler_crashed_during_a_mixed_session(
    fake_llm: FakeLLM, client: openai.OpenAI, http: httpx.Client
) -> None:
    fake_llm.cut_stream(1)
    fake_llm.malformed()
    fake_llm.fail(429, retry_after=1)
    for _ in range(3):
        with pytest.raises((openai.APIError, json.JSONDecodeError)):
            client.chat.completions.create(model="fake-chat", messages=USER_MSG)
    http.get("/nowhere")
    client.embeddings.create(model="fake-embed", input=[[1, 2, 3], [4, 5]])

    assert fake_llm.server_errors == []
    assert len(fake_llm.requests) == 5
