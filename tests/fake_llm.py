"""Fake OpenAI-compatible server that tests script over HTTP, including failures."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast

__all__ = [
    "DEFAULT_REPLY",
    "FakeLLM",
    "RecordedRequest",
    "error_body",
    "fake_embedding",
    "iter_sse_data",
    "split_tokens",
]

Endpoint = Literal["chat", "embeddings", "models"]
ENDPOINTS: tuple[Endpoint, ...] = ("chat", "embeddings", "models")

DEFAULT_REPLY = "Hello from the fake LLM."
DEFAULT_CUT_TEXT = "This streamed reply is going to be cut off before it is finished."

# Raised when the peer has gone away while we read or write (BrokenPipeError,
# ConnectionResetError, socket timeouts... are all OSError subclasses).
_GONE = OSError

_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", None),
    409: ("conflict", None),
    422: ("invalid_request_error", None),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}


def split_tokens(text: str) -> list[str]:
    """Split text into word tokens that keep their trailing whitespace.

    ``"".join(split_tokens(text)) == text`` always holds.
    """
    if not text:
        return []
    tokens = re.findall(r"\s*\S+\s*", text)
    return tokens or [text]


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body for ``status``."""
    err_type, code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {
        "error": {
            "message": message or f"Fake LLM scripted error {status}.",
            "type": err_type,
            "param": None,
            "code": code,
        }
    }


def _rough_token_count(value: Any) -> int:
    """Whitespace-split token count of a string or an OpenAI message structure."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_rough_token_count(item) for item in value)
    if isinstance(value, dict):
        total = 0
        for key in ("content", "text"):
            if key in value:
                total += _rough_token_count(value[key])
        return total
    return 0


def fake_embedding(text: str, dim: int) -> list[float]:
    """Deterministic unit-length vector of ``dim`` floats derived from a hash of ``text``."""
    raw = hashlib.shake_256(text.encode("utf-8")).digest(dim * 4)
    values = [(n / 0xFFFFFFFF) * 2.0 - 1.0 for n in struct.unpack(f"<{dim}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any | None
    raw_body: bytes = b""
    # Wall-clock time (time.time()) at which the request arrived (recorded on receipt).
    received_at: float = field(default_factory=time.time)


@dataclass
class _Action:
    kind: Literal["reply", "fail", "hang", "malformed", "cut"]
    text: str = ""
    tokens: list[str] | None = None
    delay: float = 0.0
    usage: dict[str, Any] | None = None
    status: int = 200
    body: str | dict[str, Any] | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    after_tokens: int = 0
    finish_reason: str = "stop"


@dataclass
class _State:
    queues: dict[str, deque[_Action]] = field(
        default_factory=lambda: {name: deque() for name in ENDPOINTS}
    )
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnects: int = 0
    server_errors: list[BaseException] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeLLM

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away is an expected event for this server, never a crash; anything
        # else is a bug in the fake: keep it for tests to see and print the traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or exc is None:
            return
        self.fake._record_error(exc)
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    timeout = 30  # idle keep-alive connections end eventually
    server: _Server

    # ----------------------------------------------------------------- plumbing
    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        fake = self.server.fake
        try:
            raw = self._read_body()
        except _GONE:
            self.close_connection = True
            return
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        body: Any | None = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        fake._record(RecordedRequest(self.command, path, headers, body, raw))

        try:
            endpoint = self._route(path)
            if endpoint is None:
                self._send_json(404, error_body(404, f"Unknown path {self.command} {self.path}"))
                return
            if self.command == "POST" and (bad_json or not isinstance(body, dict)):
                self._send_json(400, error_body(400, "Request body is not a JSON object."))
                return
            request = cast(dict[str, Any], body) if isinstance(body, dict) else {}
            action = fake._next_action(endpoint)
            if action is None and endpoint == "chat" and fake.responder is not None:
                # A test-supplied function answers from the request itself: deterministic
                # whatever order concurrent callers (chat, workers) reach the server in.
                answer = fake.responder(request)
                if answer is not None:
                    text = answer if isinstance(answer, str) else json.dumps(answer)
                    action = _Action("reply", text=text)
            self._perform(endpoint, path, request, action)
        except _GONE:
            self.close_connection = True

    def _route(self, path: str) -> Endpoint | None:
        if self.command == "POST" and path == "/v1/chat/completions":
            return "chat"
        if self.command == "POST" and path == "/v1/embeddings":
            return "embeddings"
        if self.command == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            return "models"
        return None

    # ------------------------------------------------------------------ sending
    def _send_bytes(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(
        self, status: int, obj: Any, extra_headers: dict[str, str] | None = None
    ) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), extra_headers=extra_headers)

    def _abort(self) -> None:
        """Close the connection abruptly, mid-response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # ---------------------------------------------------------------- behaviour
    def _perform(
        self, endpoint: Endpoint, path: str, request: dict[str, Any], action: _Action | None
    ) -> None:
        fake = self.server.fake
        if action is not None and action.kind == "hang":
            fake._sleep(action.seconds)
            action = None  # then answer as if nothing was scripted
        if action is None:
            action = _Action("reply", text=fake.default_reply) if endpoint == "chat" else None

        if action is not None and action.kind == "fail":
            self._send_fail(action)
            return
        if action is not None and action.kind == "malformed":
            if action.delay:
                fake._sleep(action.delay)
            self._send_bytes(200, action.body.encode() if isinstance(action.body, str) else b"")
            return

        if endpoint == "models":
            self._send_models(path)
        elif endpoint == "embeddings":
            self._send_embeddings(request)
        else:
            assert action is not None
            if request.get("stream"):
                self._send_stream(request, action)
            else:
                self._send_completion(request, action)

    def _send_fail(self, action: _Action) -> None:
        headers: dict[str, str] = {}
        if action.retry_after is not None:
            ra = action.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        if action.delay:
            self.server.fake._sleep(action.delay)
        if action.body is None:
            self._send_json(action.status, error_body(action.status), headers)
        elif isinstance(action.body, dict):
            self._send_json(action.status, action.body, headers)
        else:
            try:
                json.loads(action.body)
                ctype = "application/json"
            except ValueError:
                ctype = "text/plain; charset=utf-8"
            self._send_bytes(action.status, action.body.encode(), ctype, headers)

    def _send_models(self, path: str) -> None:
        fake = self.server.fake
        created = int(time.time())
        entries = [
            {"id": m, "object": "model", "created": created, "owned_by": "fake"}
            for m in fake.models
        ]
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": entries})
            return
        wanted = path[len("/v1/models/") :]
        for entry in entries:
            if entry["id"] == wanted:
                self._send_json(200, entry)
                return
        self._send_json(404, error_body(404, f"The model '{wanted}' does not exist"))

    def _send_embeddings(self, request: dict[str, Any]) -> None:
        fake = self.server.fake
        raw_input = request.get("input")
        inputs: list[Any]
        if isinstance(raw_input, str):
            inputs = [raw_input]
        elif (
            isinstance(raw_input, list) and raw_input and all(isinstance(x, int) for x in raw_input)
        ):
            inputs = [raw_input]  # a single pre-tokenised input
        elif isinstance(raw_input, list) and raw_input:
            inputs = list(raw_input)
        else:
            self._send_json(400, error_body(400, "'input' must be a non-empty string or list."))
            return
        dim = request.get("dimensions") or fake.embedding_dim
        if not isinstance(dim, int) or dim <= 0:
            self._send_json(400, error_body(400, "'dimensions' must be a positive integer."))
            return
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        prompt_tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            prompt_tokens += len(item) if isinstance(item, list) else len(text.split())
            vector = fake_embedding(text, dim)
            embedding: Any = vector
            if as_base64:
                embedding = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": request.get("model") or "fake-embed",
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            },
        )

    @staticmethod
    def _usage(request: dict[str, Any], text: str, given: dict[str, Any] | None) -> dict[str, Any]:
        if given is not None:
            return dict(given)
        prompt = _rough_token_count(request.get("messages") or [])
        completion = len(text.split())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _send_completion(self, request: dict[str, Any], action: _Action) -> None:
        fake = self.server.fake
        if action.delay:
            fake._sleep(action.delay)
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or "fake-chat",
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": action.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": action.finish_reason,
                }
            ],
            "usage": self._usage(request, action.text, action.usage),
        }
        if action.kind != "cut":
            self._send_json(200, completion)
            return
        # A cut non-streamed reply: promise the whole body, deliver half of it, hang up.
        payload = json.dumps(completion).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2])
        self._abort()

    def _write_chunk(self, data: bytes) -> bool:
        """Write one HTTP chunk; on a vanished client count a disconnect and return False."""
        try:
            self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except _GONE:
            self.server.fake._count_disconnect()
            self.close_connection = True
            return False
        return True

    def _send_stream(self, request: dict[str, Any], action: _Action) -> None:
        fake = self.server.fake
        opts = request.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        tokens = list(action.tokens) if action.tokens is not None else split_tokens(action.text)
        cut = action.kind == "cut"
        if cut:
            tokens = tokens[: action.after_tokens]
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model") or "fake-chat",
            "system_fingerprint": "fp_fake",
        }

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {**base, "choices": choices, **extra}
            if include_usage and "usage" not in extra:
                chunk["usage"] = None
            return f"data: {json.dumps(chunk)}\n\n".encode()

        def delta_choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        self.end_headers()
        self.wfile.flush()

        if not tokens and not cut:
            tokens = [""]  # still announce the role
        for i, token in enumerate(tokens):
            if i and action.delay:
                fake._sleep(action.delay)
            delta: dict[str, Any] = {"content": token}
            if i == 0:
                delta = {"role": "assistant", "content": token}
            if not self._write_chunk(event([delta_choice(delta)])):
                return
        if cut:
            self._abort()
            return
        if action.delay:
            fake._sleep(action.delay)
        if not self._write_chunk(event([delta_choice({}, action.finish_reason)])):
            return
        if include_usage:
            usage = self._usage(request, "".join(tokens), action.usage)
            if not self._write_chunk(event([], usage=usage)):
                return
        if not self._write_chunk(b"data: [DONE]\n\n"):
            return
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except _GONE:
            self.close_connection = True


class FakeLLM:
    """An OpenAI-compatible HTTP server on 127.0.0.1 whose answers tests script.

    Scripted responses are queued per endpoint ("chat", "embeddings", "models") and consumed
    one per request, first in first out; an empty queue falls back to the default behaviour
    (``default_reply`` for chat, hash-derived vectors for embeddings, ``models`` for models).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.default_reply: str = DEFAULT_REPLY
        # Called with a chat request's JSON body when nothing is queued; returns the reply
        # text (or a JSON-able object), or None for the default reply.
        self.responder: Callable[[dict[str, Any]], str | dict[str, Any] | None] | None = None
        self.embedding_dim: int = 384
        self.models: list[str] = ["fake-chat", "fake-small"]
        self._lock = threading.Lock()
        self._state = _State()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------- lifecycle
    def start(self) -> FakeLLM:
        if self._server is not None:
            raise RuntimeError("FakeLLM is already running")
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeLLM:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wake up hangs and delays
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("FakeLLM is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # --------------------------------------------------------------- scripting
    def _enqueue(self, endpoint: str, action: _Action) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        with self._lock:
            self._state.queues[endpoint].append(action)

    def reply(
        self,
        text: str,
        *,
        tokens: list[str] | None = None,
        delay: float = 0.0,
        usage: dict[str, Any] | None = None,
        endpoint: str = "chat",
        finish_reason: str = "stop",
    ) -> None:
        """Queue a successful chat completion (streamed as ``tokens`` if the client streams);
        ``finish_reason="length"`` says the token limit ended it."""
        if endpoint != "chat":
            raise ValueError("reply() only applies to the 'chat' endpoint")
        self._enqueue(
            endpoint,
            _Action(
                "reply",
                text=text,
                tokens=list(tokens) if tokens is not None else None,
                delay=delay,
                usage=usage,
                finish_reason=finish_reason,
            ),
        )

    def reply_json(
        self,
        obj: Any,
        *,
        delay: float = 0.0,
        usage: dict[str, Any] | None = None,
        endpoint: str = "chat",
    ) -> None:
        """Queue a chat completion whose content is ``json.dumps(obj)``."""
        self.reply(json.dumps(obj), delay=delay, usage=usage, endpoint=endpoint)

    def fail(
        self,
        status: int,
        *,
        body: str | dict[str, Any] | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        endpoint: str = "chat",
    ) -> None:
        """Queue an HTTP error; the body defaults to an OpenAI-style error JSON."""
        self._enqueue(
            endpoint,
            _Action("fail", status=status, body=body, retry_after=retry_after, delay=delay),
        )

    def hang(self, seconds: float, *, endpoint: str = "chat") -> None:
        """Queue a request that sleeps ``seconds`` and then answers as if nothing was queued."""
        self._enqueue(endpoint, _Action("hang", seconds=seconds))

    def malformed(
        self, body: str = "{not json", *, delay: float = 0.0, endpoint: str = "chat"
    ) -> None:
        """Queue a 200 ``application/json`` response whose body is not valid JSON."""
        self._enqueue(endpoint, _Action("malformed", body=body, delay=delay))

    def cut_stream(
        self,
        after_tokens: int,
        text: str = DEFAULT_CUT_TEXT,
        *,
        tokens: list[str] | None = None,
        delay: float = 0.0,
        endpoint: str = "chat",
    ) -> None:
        """Queue a streamed reply that sends ``after_tokens`` chunks, then drops the connection.

        No finish_reason, no ``[DONE]``, no terminating HTTP chunk. A non-streamed request
        consuming this gets half of a ``Content-Length``-announced body and a hang-up.
        """
        if endpoint != "chat":
            raise ValueError("cut_stream() only applies to the 'chat' endpoint")
        self._enqueue(
            endpoint,
            _Action(
                "cut",
                text=text,
                tokens=list(tokens) if tokens is not None else None,
                delay=delay,
                after_tokens=after_tokens,
            ),
        )

    def pending(self, endpoint: str = "chat") -> int:
        """How many scripted responses are still queued for ``endpoint``."""
        with self._lock:
            return len(self._state.queues[endpoint])

    def reset(self) -> None:
        """Forget queued responses, recorded requests and the disconnect count."""
        with self._lock:
            self._state = _State()
        self.responder = None
        self.default_reply = DEFAULT_REPLY

    # -------------------------------------------------------------- inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the chat completion requests received, in order."""
        return [
            r.json
            for r in self.requests
            if r.path == "/v1/chat/completions" and isinstance(r.json, dict)
        ]

    @property
    def embedding_requests(self) -> list[dict[str, Any]]:
        return [
            r.json for r in self.requests if r.path == "/v1/embeddings" and isinstance(r.json, dict)
        ]

    @property
    def disconnects(self) -> int:
        """Stream writes that failed because the client had closed the connection."""
        with self._lock:
            return self._state.disconnects

    @property
    def server_errors(self) -> list[BaseException]:
        """Unexpected exceptions raised inside request handlers (bugs in the fake)."""
        with self._lock:
            return list(self._state.server_errors)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def wait_for_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: self.disconnects >= count, timeout)

    # ---------------------------------------------------------------- internal
    def _next_action(self, endpoint: str) -> _Action | None:
        with self._lock:
            queue = self._state.queues[endpoint]
            return queue.popleft() if queue else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._state.requests.append(request)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._state.server_errors.append(exc)

    def _count_disconnect(self) -> None:
        with self._lock:
            self._state.disconnects += 1

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the server is stopping."""
        if seconds > 0:
            self._stopping.wait(seconds)


def iter_sse_data(lines: Iterator[str]) -> Iterator[str]:
    """Yield the ``data:`` payloads of a server-sent event stream (for raw-HTTP tests)."""
    for line in lines:
        if line.startswith("data: "):
            yield line[len("data: ") :]
