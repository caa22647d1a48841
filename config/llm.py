"""The LLM gateway: the only module that talks to the model endpoint (any OpenAI-compatible API).

Everything else calls these functions and handles `LLMError`. Timeouts are seconds, not the
SDK's 600 s default; every call sets `max_tokens`; non-streamed calls retry with backoff
(the SDK honours `Retry-After`), streamed calls never retry, since tokens already shown
cannot be taken back.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import weakref
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx2
import openai
from django.conf import settings

from config.endpoints import Target


class LLMError(Exception):
    """The model endpoint failed; `message` is safe to show to the person."""

    message = "The assistant is unavailable right now. Please try again."

    def __init__(self, detail: str = "", *, message: str | None = None) -> None:
        super().__init__(detail or self.message)
        if message:
            self.message = message


class LLMUnavailable(LLMError):
    message = "The assistant could not be reached. Please try again in a moment."


class LLMStreamCut(LLMUnavailable):
    """The endpoint answered, then the reply stream broke off before it finished."""

    message = "The reply was cut off before it finished. Please retry."


class LLMTimeout(LLMError):
    message = "The assistant took too long to answer. Please try again."


class LLMRateLimited(LLMError):
    message = "The assistant is busy (rate limited). Please try again shortly."


class LLMBadResponse(LLMError):
    message = "The assistant sent a reply that could not be read. Please try again."


class LLMServerError(LLMError):
    """The endpoint answered with a 5xx: its failure, worth retrying (unlike a 4xx)."""


class LLMBusy(LLMTimeout):
    """Connected, but no answer in time: the endpoint is up and busy (health checks only)."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed reply: text, or (last) the usage the endpoint reported."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


def _timeout(read: float | None = None) -> openai.Timeout:
    return openai.Timeout(
        read or settings.LLM_READ_TIMEOUT,
        connect=settings.LLM_CONNECT_TIMEOUT,
    )


def _base_url() -> str:
    if not settings.LLM_BASE_URL:
        raise LLMUnavailable("LLM_BASE_URL is not set (make run starts a local model)")
    return str(settings.LLM_BASE_URL)


def _background_base_url() -> str:
    # Background work (extraction, titles, summaries) may have its own endpoint, so that it
    # never queues in front of, or cuts short, a person's streamed reply.
    return str(settings.LLM_BACKGROUND_BASE_URL or _base_url())


def sync_client(
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
    background: bool = True,
    target: Target | None = None,
) -> openai.OpenAI:
    """A client per configuration, kept for the process: building one costs 20-50 ms
    (bench/extract.py), and a kept client reuses its connections. Non-streamed calls are
    background work, so by default it talks to the background endpoint; `target` names
    another server (config/endpoints.py)."""
    if target is not None and not target.base_url:
        raise LLMUnavailable("this endpoint has no base URL")
    return _cached_client(
        target.base_url if target else _background_base_url() if background else _base_url(),
        target.api_key() if target else settings.LLM_API_KEY,
        timeout or settings.LLM_READ_TIMEOUT,
        settings.LLM_CONNECT_TIMEOUT,
        settings.LLM_MAX_RETRIES if max_retries is None else max_retries,
    )


@functools.lru_cache(maxsize=16)
def _cached_client(
    base_url: str, api_key: str, read: float, connect: float, max_retries: int
) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=openai.Timeout(read, connect=connect),
        max_retries=max_retries,
    )


# One async client per event loop: its connection pool belongs to the loop that opened it.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
    weakref.WeakKeyDictionary()
)


# Clients of other endpoints than the default, per loop and server (config/endpoints.py).
_async_endpoint_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def async_client(target: Target | None = None) -> openai.AsyncOpenAI:
    loop = asyncio.get_running_loop()
    if target is not None:
        if not target.base_url:
            raise LLMUnavailable("this endpoint has no base URL")
        clients = _async_endpoint_clients.setdefault(loop, {})
        key = (target.base_url, target.api_key_env)
        if key not in clients:
            clients[key] = openai.AsyncOpenAI(
                base_url=target.base_url,
                api_key=target.api_key(),
                timeout=_timeout(),
                max_retries=settings.LLM_MAX_RETRIES,
            )
        return clients[key]
    client = _async_clients.get(loop)
    if client is None or str(client.base_url).rstrip("/") != _base_url().rstrip("/"):
        client = openai.AsyncOpenAI(
            base_url=_base_url(),
            api_key=settings.LLM_API_KEY,
            timeout=_timeout(),
            max_retries=settings.LLM_MAX_RETRIES,
        )
        _async_clients[loop] = client
    return client


_IDENTIFIER = re.compile(r"[^A-Za-z0-9_.-]+")


def _kind(exc: Exception) -> str:
    """What went wrong, by kinds only: the exception class and, for an HTTP error, its status
    and the provider's error type and code. Never the provider's message, which may quote
    the request (the person's words, a secret they typed): the detail is logged (a reply's
    failure, a task's retry) and logs carry kinds, never text."""
    parts = [type(exc).__name__]
    if isinstance(exc, openai.APIStatusError):
        parts.append(str(exc.status_code))
        for label in (exc.type, exc.code):
            if isinstance(label, str) and label:
                parts.append(_IDENTIFIER.sub("", label)[:40])
    return " ".join(parts)


def _translate(exc: Exception) -> LLMError:
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout(_kind(exc))
    if isinstance(exc, openai.RateLimitError):
        return LLMRateLimited(_kind(exc))
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailable(_kind(exc))
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return LLMServerError(_kind(exc))
        return LLMError(_kind(exc))
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError | ValueError):
        return LLMBadResponse(_kind(exc))
    return LLMError(_kind(exc))


def list_models(*, timeout: float = 5.0, background: bool = False) -> list[str]:
    """The model ids the chat (or background) endpoint serves (used by the health check).

    Raises LLMBusy when the endpoint accepted the connection but did not answer in time: it
    is up, and busy (llama.cpp's server answers this only between two generations).
    """
    try:
        client = sync_client(timeout=timeout, max_retries=0, background=background)
        page = client.models.list()
        return [model.id for model in page.data]
    except openai.APITimeoutError as exc:
        # The SDK wraps its HTTP library's timeouts (httpx, or its fork httpx2); only a
        # connect timeout means nobody answered at all.
        cause = type(exc.__cause__).__name__
        if cause in ("ReadTimeout", "WriteTimeout", "PoolTimeout"):
            raise LLMBusy(str(exc)) from exc
        raise _translate(exc) from exc
    except Exception as exc:
        raise _translate(exc) from exc


def complete(
    messages: list[dict[str, str]],
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float = 0.2,
    json_schema: dict[str, Any] | None = None,
    target: Target | None = None,
) -> str:
    """One non-streamed completion (background work), retried with backoff by the SDK.

    `target` sends it to another endpoint's server and model than the background one.

    With `json_schema`, asks for a JSON object (`response_format` `json_object`, with the
    schema for servers such as llama.cpp that constrain output by it) and returns the text;
    the caller parses and validates it.
    """
    body: dict[str, Any] = {
        "model": model or (target.model if target else settings.LLM_BACKGROUND_MODEL),
        "messages": messages,
        "max_tokens": max_tokens or settings.LLM_MAX_TOKENS,
        "temperature": temperature,
    }
    if json_schema is not None:
        body["response_format"] = {"type": "json_object", "schema": json_schema}
    try:
        # The SDK's generic POST: its auth, retries with backoff and errors, without walking
        # every message through its typed schemas and building a model of the answer (about
        # 1 ms of CPU and 2.5 ms a call, bench/extract.py).
        raw = sync_client(target=target).post("/chat/completions", cast_to=bytes, body=body)
        response = json.loads(raw)
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise LLMBadResponse("no choices in the reply")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        return content if isinstance(content, str) else ""
    except Exception as exc:
        raise _translate(exc) from exc


async def stream_chat(
    messages: list[dict[str, str]],
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float = 0.7,
    target: Target | None = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
) -> AsyncGenerator[StreamDelta]:
    """Stream a chat reply. Closing the iterator closes the upstream HTTP stream.

    The request goes through the SDK (auth, headers, status errors), but the chunks are read
    as plain JSON: the SDK builds a pydantic model for every chunk, about 150 us of CPU a
    token against 15 us for `json.loads` (bench/chat.py), and with hundreds of streams in
    one process that was the largest per-token cost.
    """
    # Sent only when set: the endpoint's own default otherwise.
    sampling: dict[str, Any] = {}
    if top_p is not None:
        sampling["top_p"] = top_p
    if stop:
        sampling["stop"] = list(stop)
    if frequency_penalty is not None:
        sampling["frequency_penalty"] = frequency_penalty
    if presence_penalty is not None:
        sampling["presence_penalty"] = presence_penalty
    try:
        client = async_client(target)
        response_context = client.with_options(
            max_retries=0
        ).chat.completions.with_streaming_response.create(
            model=model or (target.model if target else settings.LLM_CHAT_MODEL),
            messages=cast(Any, messages),
            max_tokens=max_tokens or settings.LLM_MAX_TOKENS,
            temperature=temperature,
            stream=True,
            stream_options={"include_usage": True},
            **sampling,
        )
        response = await response_context.__aenter__()
    except Exception as exc:
        raise _translate(exc) from exc
    finished = False
    try:
        async for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, `event:` lines
            data = line[5:].strip()
            if data.startswith("[DONE]"):
                break
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise LLMBadResponse("a stream chunk is not a JSON object")
            if chunk.get("error"):
                error = chunk["error"]
                detail = error.get("message") if isinstance(error, dict) else None
                raise openai.APIError(
                    message=str(detail or "An error occurred during streaming"),
                    request=response.http_response.request,
                    body=error,
                )
            delta = _delta(chunk)
            if delta is not None:
                finished = finished or delta.finish_reason is not None
                yield delta
    except Exception as exc:
        raise _translate_mid_stream(_transport_error(exc, response)) from exc
    finally:
        await response_context.__aexit__(None, None, None)
    if not finished:
        # The stream ended without a finish reason: the connection was cut mid-reply.
        raise LLMStreamCut("the reply stream ended early")


def _translate_mid_stream(exc: Exception) -> LLMError:
    """An error once the endpoint has answered: it was reached, so a broken connection is a
    cut-off reply, not "could not be reached"."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout(str(exc))
    if isinstance(exc, openai.APIConnectionError):
        return LLMStreamCut(_kind(exc))
    return _translate(exc)


def _delta(chunk: dict[str, Any]) -> StreamDelta | None:
    """The text, usage and finish reason of one chat.completion.chunk, or None if empty."""
    raw_usage = chunk.get("usage")
    usage = (
        Usage(
            int(raw_usage.get("prompt_tokens") or 0), int(raw_usage.get("completion_tokens") or 0)
        )
        if isinstance(raw_usage, dict)
        else None
    )
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list):
        return StreamDelta(usage=usage) if usage else None
    choice = choices[0] if isinstance(choices[0], dict) else {}
    finish_reason = choice.get("finish_reason")
    delta = choice.get("delta")
    text = (delta.get("content") or "") if isinstance(delta, dict) else ""
    if text or usage or finish_reason:
        return StreamDelta(text=str(text), usage=usage, finish_reason=finish_reason)
    return None


def _transport_error(exc: Exception, response: Any) -> Exception:
    """What the SDK's own stream would have raised for a network failure mid-stream."""
    if isinstance(exc, httpx2.TimeoutException):
        return openai.APITimeoutError(request=response.http_response.request)
    if isinstance(exc, httpx2.TransportError):
        return openai.APIConnectionError(request=response.http_response.request)
    return exc


def count_tokens(text: str) -> int:
    """Estimate the tokens of `text` for budgeting, offline and in microseconds.

    BPE tokenizers of current chat models average about four characters, or three quarters
    of a word, per token for English; taking the larger of the two estimates keeps budgets
    safe for code and for languages with long words. Exact counts, when the endpoint reports
    them, are stored on each message.
    """
    if not text:
        return 0
    return max(len(text) // 4, round(len(text.split()) * 4 / 3), 1)


def _embedding_client() -> openai.OpenAI:
    # Embeddings may come from another server than the chat model (EMBEDDING_BASE_URL).
    if not settings.EMBEDDING_BASE_URL:
        raise LLMUnavailable("EMBEDDING_BASE_URL is not set (embeddings then run in-process)")
    return openai.OpenAI(
        base_url=str(settings.EMBEDDING_BASE_URL),
        api_key=settings.EMBEDDING_API_KEY,
        timeout=_timeout(),
        max_retries=settings.LLM_MAX_RETRIES,
    )


def embed_texts(texts: list[str], *, model: str, dimensions: int | None) -> list[list[float]]:
    """Embed `texts` with the embedding endpoint: one vector per text, in order."""
    kwargs: dict[str, Any] = {}
    if dimensions is not None:
        kwargs["dimensions"] = dimensions
    try:
        response = _embedding_client().embeddings.create(
            model=model,
            input=texts,
            # Plain JSON floats: every OpenAI-compatible server speaks them; not all do base64.
            encoding_format="float",
            **kwargs,
        )
        if len(response.data) != len(texts):
            raise LLMBadResponse(f"{len(response.data)} embeddings for {len(texts)} texts")
        # The API numbers each vector by its input's index; order is not promised.
        return [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]
    except Exception as exc:
        raise _translate(exc) from exc
