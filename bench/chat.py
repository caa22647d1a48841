"""Benchmark of the chat hot path: POST /chat/m/<id>/stream served by uvicorn against a stub LLM.

Run: `.venv/bin/python bench/chat.py [--workers N] [--concurrency 50,500] [--profile]` from
the repository root. It needs no running stack: it starts an embedded PostgreSQL (unless
DATABASE_URL is set), a throw-away Redis (unless REDIS_URL is set), the fake OpenAI-compatible
server of the tests (20 tokens, 50 ms apart) and uvicorn with N worker processes (default
WEB_CONCURRENCY, else one per core) as a subprocess, then measures

1. the server time before the model is asked: sequential single streams, from the client
   sending the POST to the stub receiving the chat-completion request (wall clock, both on
   this machine), i.e. auth, claim, prompt assembly and recall; and, interleaved with them, a
   trivial authenticated view (GET /api/settings/: session, user, a JSON body), whose time
   is the yardstick for the hot path (their ratio);
2. the stub's own first token: 50 concurrent streams straight to the stub, no Mnemo between;
3. 50 and then 500 concurrent streams through Mnemo, each person streaming one reply (within
   the default rate limits): errors by status, time to the first SSE byte and to the first
   `token` event, total wall time, and the first-token p95 against the stub's own;
4. CPU per token in this process: the openai SDK's chunk parsing (`config.llm.stream_chat`
   against the stub, no delay) against a bare JSON parse of the same bytes, SSE framing, and
   markdown rendering of a reply once versus once per token;
5. with --profile, py-spy samples every server process during the largest phase and the
   report lists where their CPU went.

With --floor the server is bench/chat_floor.py instead: the same events relayed from the stub
with no Django, authentication, database, embedding or recall, the floor on this machine.

Prints numbers; asserts nothing about time. Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

WARMUP = 4  # streams before the sequential measurement (process start, pools, imports)
SEQUENTIAL = 50
CONCURRENCY = (50, 500)
STUB_STREAMS = 50  # concurrent streams straight to the stub: its own first-token time
TOKENS = [f"word{i} " for i in range(20)]  # the stub's reply, one chunk per token
TOKEN_INTERVAL = 0.05  # seconds between two streamed tokens
POOL_MAX = os.environ.get("BENCH_DATABASE_POOL_MAX")  # per process; unset: the app's default
PHASE_TIMEOUT = 120.0  # seconds, per phase: nothing can hang
EMAIL_DOMAIN = "bench.invalid"
TRIVIAL_VIEW = "/api/settings/"  # authenticated, one small JSON body: the yardstick


# --- Results ---


@dataclass
class Stream:
    """One pending reply, ready to be streamed by its own signed-in user."""

    user_id: int
    reply_id: int
    content: str
    session_key: str
    csrf: str


@dataclass
class Result:
    sent_at: float = 0.0  # wall clock (time.time()) just before the request is sent
    status: int = 0
    first_byte_ms: float | None = None
    first_token_ms: float | None = None
    total_ms: float | None = None
    tokens: int = 0
    done: dict[str, Any] | None = None
    error: str | None = None
    llm_request_ms: float | None = None  # sent_at -> the stub received the chat request
    trivial_ms: float | None = None  # the trivial authenticated view, just before this stream

    def failure(self) -> str | None:
        """Why this stream counts as an error, or None."""
        if self.error:
            return self.error
        if self.status != 200:
            return f"HTTP {self.status}"
        if self.done is None:
            return "no done event"
        if self.done.get("status") != "complete":
            detail = self.done.get("error") or ""
            return f"done status {self.done.get('status')}" + (f" ({detail})" if detail else "")
        if self.done.get("content") != "".join(TOKENS) or self.tokens != len(TOKENS):
            return "incomplete content"
        return None


@dataclass
class PhaseStats:
    name: str
    results: list[Result]
    wall_s: float
    cpu_server_s: float = 0.0
    cpu_bench_s: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.errors = Counter(f for r in self.results if (f := r.failure()) is not None)

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.failure() is None]

    def values(self, attribute: str) -> list[float]:
        """One timing of the successful streams."""
        return [v for r in self.ok if (v := getattr(r, attribute)) is not None]

    def peak_llm_streams(self) -> int:
        """The most upstream LLM streams open at once (from its request to the done event)."""
        edges = []
        for r in self.ok:
            if r.llm_request_ms is not None and r.total_ms is not None:
                edges += [
                    (r.sent_at * 1000 + r.llm_request_ms, 1),
                    (r.sent_at * 1000 + r.total_ms, -1),
                ]
        peak = current = 0
        for _, step in sorted(edges):
            current += step
            peak = max(peak, current)
        return peak


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


def fmt(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction):8.1f}" if values else "       -"


# --- The stub LLM, in its own process ---


def _stub_main(connection: Any) -> None:
    """Child process: the tests' fake OpenAI-compatible server, driven over a pipe."""
    sys.path.insert(0, str(BASE_DIR))
    from tests import fake_llm

    # 500 connections at once need a deeper listen backlog than socketserver's 5; and
    # TCP_NODELAY, as real servers set it: otherwise Nagle holds the first token (written
    # just after the headers) until the delayed ACK, 40 ms that are not the app's.
    fake_llm._Server.request_queue_size = 4096
    fake_llm._Handler.disable_nagle_algorithm = True
    fake = fake_llm.FakeLLM().start()
    connection.send(fake.base_url)
    while True:
        command, argument = connection.recv()
        if command == "reply":
            text, tokens, delay, count = argument
            for _ in range(count):
                fake.reply(text, tokens=tokens, delay=delay)
            connection.send(None)
        elif command == "chat_requests":
            times: dict[str, float] = {}
            for request in fake.requests:
                if request.path == "/v1/chat/completions" and isinstance(request.json, dict):
                    messages = request.json.get("messages") or [{}]
                    times.setdefault(str(messages[-1].get("content")), request.received_at)
            connection.send(times)
        else:
            fake.stop()
            connection.send(None)
            return


class StubProcess:
    """The stub in a process of its own, so that its 500 threads do not share a GIL with
    the benchmark's HTTP client (in one process they starved it, and the client's delays
    read as the server's)."""

    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_stub_main, args=(child,), daemon=True)
        self.process.start()
        self.base_url: str = self.connection.recv()

    def reply(self, text: str, *, tokens: list[str], delay: float = 0.0, count: int = 1) -> None:
        self.connection.send(("reply", (text, tokens, delay, count)))
        self.connection.recv()

    def chat_request_times(self) -> dict[str, float]:
        """{last user message: wall time the stub received that chat request}."""
        self.connection.send(("chat_requests", None))
        times: dict[str, float] = self.connection.recv()
        return times

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, EOFError):
                self.connection.send(("stop", None))
                self.connection.recv()
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()


# --- Services ---


class Bench:
    """What the benchmark starts, so that `stop()` can take exactly that down again."""

    def __init__(self, workers: int, floor: bool = False) -> None:
        from config import stack

        self.root = stack.data_dir() / "bench"
        self.workers = workers
        self.floor = floor  # serve bench/chat_floor.py instead of Mnemo
        self.postgres: Any = None
        self.redis: Any = None
        self.fake: StubProcess | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = self.root / "uvicorn.log"
        self.django_ready = False
        self.session_keys: list[str] = []
        self.run_id = secrets.token_hex(4)
        self.services: dict[str, str] = {}

    def start_services(self) -> None:
        from config import stack

        self.root.mkdir(parents=True, exist_ok=True)
        if os.environ.get("DATABASE_URL"):
            self.services["PostgreSQL"] = "external (DATABASE_URL)"
        else:
            self.postgres = stack.EmbeddedPostgres(self.root / "pg")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on servers
                os.environ["DATABASE_URL"] = self.postgres.start()
            self.services["PostgreSQL"] = "embedded, " + (
                "started here" if self.postgres.started_here else "already running"
            )
        if os.environ.get("REDIS_URL"):
            self.services["Redis"] = "external (REDIS_URL)"
        else:
            self.redis = stack.EmbeddedRedis(self.root / "redis", persistent=False)
            os.environ["REDIS_URL"] = self.redis.start()
            self.services["Redis"] = "embedded, not persistent"
        self.fake = StubProcess()
        # The default rate limits stay on: each person sends one message, well within them.
        os.environ.update(
            {"LLM_BASE_URL": self.fake.base_url, "DJANGO_SETTINGS_MODULE": "config.settings"}
        )
        if POOL_MAX:
            os.environ["DATABASE_POOL_MAX"] = POOL_MAX
        os.environ.pop("MNEMO_PRODUCTION", None)  # no HTTPS redirect on loopback

    def setup_django(self) -> None:
        import django
        from django.core.management import call_command

        django.setup()
        self.django_ready = True
        call_command("migrate", interactive=False, verbosity=0)
        self.delete_bench_users()  # leftovers of an interrupted run

    def create_streams(self, count: int) -> list[Stream]:
        """Users (bulk, unusable passwords), a conversation and a pending reply each, sessions."""
        from importlib import import_module

        from django.conf import settings
        from django.middleware.csrf import _get_new_csrf_string

        from accounts.models import User
        from chat import services

        users = []
        for _ in range(count):
            user = User(email=f"u{secrets.token_hex(6)}-{self.run_id}@{EMAIL_DOMAIN}")
            user.set_unusable_password()
            users.append(user)
        users = User.objects.bulk_create(users)
        session_store = import_module(settings.SESSION_ENGINE).SessionStore
        streams = []
        for index, user in enumerate(users):
            conversation = services.start_conversation(user=user)
            content = f"Benchmark message {index} of {self.run_id}: what should I cook tonight?"
            _, reply = services.send_message(
                user=user, conversation_id=conversation.pk, content=content
            )
            session = session_store()
            session["_auth_user_id"] = str(user.pk)
            session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
            session["_auth_user_hash"] = user.get_session_auth_hash()
            session.set_expiry(3600)
            session.create()
            assert session.session_key is not None
            self.session_keys.append(session.session_key)
            streams.append(
                Stream(user.pk, reply.pk, content, session.session_key, _get_new_csrf_string())
            )
        return streams

    def start_server(self, streams: list[Stream]) -> str:
        from config import stack

        port = stack.free_port()
        env = os.environ.copy()
        env["PYTHONUNBUFFERED"] = "1"
        application = "config.asgi:application"
        if self.floor:
            contents = self.root / "floor-contents.json"
            contents.write_text(json.dumps({str(s.reply_id): s.content for s in streams}))
            env["BENCH_FLOOR_CONTENTS"] = str(contents)
            application = "bench.chat_floor:app"
        with open(self.server_log, "wb") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", application,
                 "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                 "--log-level", "warning", "--timeout-graceful-shutdown", "5",
                 "--workers", str(self.workers), "--backlog", "4096"],
                cwd=BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only, which stops it
            )  # fmt: skip
        stack.wait_for_port("127.0.0.1", port, timeout=60, process=self.server)
        return f"http://127.0.0.1:{port}"

    def delete_bench_users(self) -> None:
        from django.contrib.sessions.models import Session

        from accounts.models import User

        User.objects.filter(email__endswith=f"@{EMAIL_DOMAIN}").delete()
        Session.objects.filter(session_key__in=self.session_keys).delete()
        self.session_keys.clear()

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        if self.fake is not None:
            self.fake.stop()
        if self.django_ready:
            from django.db import connections

            try:
                self.delete_bench_users()
            except Exception as exc:
                print(f"(could not delete the benchmark's users: {exc})")
            for connection in connections.all():
                connection.close()
                close_pool = getattr(connection, "close_pool", None)
                if close_pool is not None:
                    close_pool()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on servers
                self.postgres.stop(only_if_started_here=True)


# --- Client ---


async def run_stream(client: Any, base_url: str, stream: Stream) -> Result:
    """POST the stream request and read the SSE body to its end, timing the milestones."""
    result = Result()
    headers = {
        "Cookie": f"sessionid={stream.session_key}; csrftoken={stream.csrf}",
        "X-CSRFToken": stream.csrf,
        "Accept": "text/event-stream",
    }
    url = f"{base_url}/chat/m/{stream.reply_id}/stream"
    result.sent_at = time.time()
    started = time.perf_counter()

    def elapsed_ms() -> float:
        return (time.perf_counter() - started) * 1000

    try:
        async with client.stream("POST", url, headers=headers) as response:
            result.status = response.status_code
            buffer = ""
            decoder = codecs.getincrementaldecoder("utf-8")()
            async for chunk in response.aiter_raw():
                if result.first_byte_ms is None:
                    result.first_byte_ms = elapsed_ms()
                buffer += decoder.decode(chunk)
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    event, data = "", ""
                    for line in block.split("\n"):
                        if line.startswith("event: "):
                            event = line[len("event: ") :]
                        elif line.startswith("data: "):
                            data += line[len("data: ") :]
                    if event == "token":
                        result.tokens += 1
                        if result.first_token_ms is None:
                            result.first_token_ms = elapsed_ms()
                    elif event == "done":
                        result.done = json.loads(data)
        result.total_ms = elapsed_ms()
    except Exception as exc:  # a connection refused, reset or timed out: one failed stream
        result.error = f"{type(exc).__name__}: {exc}"[:120]
    return result


def make_client(connections: int) -> Any:
    import httpx

    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(60.0, connect=30.0, pool=60.0),
    )


def queue_replies(fake: Any, count: int) -> None:
    fake.reply("".join(TOKENS), tokens=TOKENS, delay=TOKEN_INTERVAL, count=count)


def attach_llm_times(fake: Any, streams: list[Stream], results: list[Result]) -> None:
    """Match each stream to the stub's record of its chat request, by the message text."""
    received = fake.chat_request_times()
    for stream, result in zip(streams, results, strict=True):
        if stream.content in received and result.sent_at:
            result.llm_request_ms = (received[stream.content] - result.sent_at) * 1000


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU time of a process and, with `children`, all its children (uvicorn's workers)."""
    import psutil

    try:
        process = psutil.Process(pid)
        processes = [process, *(process.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for each in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def client_cpu_seconds(bench: Bench) -> float:
    """CPU time of this process (the HTTP client) and the stub's process."""
    stub = bench.fake.process.pid if bench.fake is not None else None
    return cpu_seconds(os.getpid(), children=False) + (
        cpu_seconds(stub, children=False) if stub else 0.0
    )


async def time_trivial_view(client: Any, base_url: str, stream: Stream) -> float | None:
    """ms for one GET of the trivial authenticated view, with the stream's session."""
    headers = {"Cookie": f"sessionid={stream.session_key}; csrftoken={stream.csrf}"}
    started = time.perf_counter()
    response = await client.get(f"{base_url}{TRIVIAL_VIEW}", headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed if response.status_code == 200 else None


async def sequential(
    bench: Bench, base_url: str, streams: list[Stream]
) -> tuple[list[Result], PhaseStats]:
    """Warm-up streams (a few at once, to reach every worker), then one stream at a time,
    each after one request to the trivial view; returns (warm-up results, stats)."""
    assert bench.server is not None
    queue_replies(bench.fake, len(streams))
    warmup: list[Result] = []
    results: list[Result] = []
    async with make_client(max(8, bench.workers * 2)) as client:
        async with asyncio.timeout(PHASE_TIMEOUT):
            batch = max(2, bench.workers * 2)
            for start in range(0, WARMUP, batch):
                chunk = streams[start : min(start + batch, WARMUP)]
                warmup += await asyncio.gather(*(run_stream(client, base_url, s) for s in chunk))
                for stream in chunk:
                    await time_trivial_view(client, base_url, stream)
            cpu_server, cpu_bench = cpu_seconds(bench.server.pid), client_cpu_seconds(bench)
            started = time.perf_counter()
            for stream in streams[WARMUP:]:
                trivial = await time_trivial_view(client, base_url, stream)
                result = await run_stream(client, base_url, stream)
                result.trivial_ms = trivial
                results.append(result)
    stats = PhaseStats(f"{len(results)} sequential", results, time.perf_counter() - started)
    stats.cpu_server_s = cpu_seconds(bench.server.pid) - cpu_server
    stats.cpu_bench_s = client_cpu_seconds(bench) - cpu_bench
    attach_llm_times(bench.fake, streams[:WARMUP], warmup)
    attach_llm_times(bench.fake, streams[WARMUP:], results)
    return warmup, stats


async def stub_direct(bench: Bench, count: int) -> PhaseStats:
    """`count` concurrent streams straight to the stub: its own first-token time."""
    assert bench.fake is not None
    queue_replies(bench.fake, count)
    url = f"{bench.fake.base_url}/chat/completions"
    body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    async def one(client: Any) -> Result:
        result = Result(sent_at=time.time())
        started = time.perf_counter()
        try:
            async with client.stream("POST", url, json=body) as response:
                result.status = response.status_code
                async for line in response.aiter_lines():
                    if result.first_byte_ms is None:
                        result.first_byte_ms = (time.perf_counter() - started) * 1000
                    if not line.startswith("data: {"):
                        continue
                    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
                    if (choices[0].get("delta") or {}).get("content"):
                        result.tokens += 1
                        if result.first_token_ms is None:
                            result.first_token_ms = (time.perf_counter() - started) * 1000
            result.total_ms = (time.perf_counter() - started) * 1000
            result.done = {"status": "complete", "content": "".join(TOKENS)}
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:120]
        return result

    async with make_client(count + 10) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(client) for _ in range(count)))
    return PhaseStats(f"{count} straight to the stub", list(results), time.perf_counter() - started)


class Profiler:
    """py-spy sampling every server process for one phase (when --profile and py-spy exist)."""

    def __init__(self, bench: Bench, enabled: bool) -> None:
        self.bench = bench
        self.enabled = enabled
        self.output = bench.root / "py-spy.txt"
        self.process: subprocess.Popen[bytes] | None = None
        self.problem = ""

    def start(self) -> None:
        if not self.enabled or self.bench.server is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            self.problem = "py-spy is not installed (pip install py-spy)"
            return
        self.output.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(self.bench.server.pid), "--subprocesses",
             "--format", "raw", "--rate", "200", "--gil", "--nonblocking", "-o", str(self.output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        if not self.output.exists():
            self.problem = f"py-spy wrote nothing: {err.decode(errors='replace')[-300:]}"

    def report(self) -> None:
        if not self.enabled:
            return
        print()
        print(
            "5. Where the server's CPU went in the largest phase (py-spy, threads holding the GIL)"
        )
        if self.problem or not self.output.exists():
            print(f"   {self.problem or 'no profile'}")
            return
        leaves: Counter[str] = Counter()
        groups: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = stack.split(";")  # outermost first
            leaves[frames[-1]] += count
            # Each sample counts once, for the innermost part of the app it was in.
            groups[next((g for f in reversed(frames) if (g := classify(f))), "other")] += count
        if not total:
            print("   no samples")
            return
        print(f"   {total} samples, each counted for the innermost of these it was in:")
        for group, count in groups.most_common():
            print(f"   {100 * count / total:6.1f} %  {group}")
        print("   top functions by own time:")
        for frame, count in leaves.most_common(25):
            print(f"   {100 * count / total:6.1f} %  {frame[:110]}")


PROFILE_GROUPS = [
    ("openai SDK", "openai/"),
    ("markdown rendering (chat/markdown.py)", "chat/markdown.py"),
    ("template rendering", "django/template/"),
    ("embedding (memory/embeddings.py)", "memory/embeddings.py"),
    ("recall (memory/services.py recall)", "recall (memory/services.py"),
    ("prompt assembly (assemble_prompt)", "assemble_prompt"),
    ("saving the reply (_finish)", "_finish (chat/services.py"),
    ("Celery task publishing (kombu)", "kombu/"),
    ("Redis client", "redis/"),
    ("psycopg (driver and pool)", "psycopg"),
    ("Django ORM (django/db)", "django/db/"),
    ("session and auth", "django/contrib/"),
    ("stream_reply (chat/services.py)", "chat/services.py"),
    ("SSE framing and the streamed response (chat/views.py)", "chat/views.py"),
    ("Django request handling (handlers, middleware)", "django/"),
    ("asgiref thread hops (executors, thread start)", "asgiref/"),
    ("threads (start, locks, queues)", "threading.py"),
    ("thread pools", "concurrent/futures"),
    ("httpx (the upstream LLM connection)", "httpx"),
    ("httpcore (the upstream LLM connection)", "httpcore"),
    ("uvicorn / HTTP protocol", "uvicorn/"),
    ("asyncio event loop", "asyncio/"),
]


def classify(frame: str) -> str:
    """The part of the server a frame belongs to ("" if none)."""
    if frame.startswith("process ") or "spawn_main" in frame:
        return ""
    for label, needle in PROFILE_GROUPS:
        if needle in frame:
            return label
    return ""


async def concurrent(
    bench: Bench, base_url: str, streams: list[Stream], profiler: Profiler | None = None
) -> PhaseStats:
    assert bench.server is not None
    queue_replies(bench.fake, len(streams))
    async with make_client(len(streams) + 10) as client:
        if profiler is not None:
            profiler.start()
        cpu_server, cpu_bench = cpu_seconds(bench.server.pid), client_cpu_seconds(bench)
        started = time.perf_counter()
        tasks = [asyncio.create_task(run_stream(client, base_url, s)) for s in streams]
        _, pending = await asyncio.wait(tasks, timeout=PHASE_TIMEOUT)
        wall = time.perf_counter() - started
        cpu_server = cpu_seconds(bench.server.pid) - cpu_server
        cpu_bench = client_cpu_seconds(bench) - cpu_bench
        if profiler is not None:
            profiler.stop()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    results = []
    for task in tasks:
        if task in pending:
            results.append(Result(error=f"not finished after {PHASE_TIMEOUT:.0f} s"))
        else:
            results.append(task.result())
    stats = PhaseStats(f"{len(streams)} concurrent", results, wall)
    stats.cpu_server_s, stats.cpu_bench_s = cpu_server, cpu_bench
    attach_llm_times(bench.fake, streams, results)
    return stats


# --- CPU per token, in this process ---


def per_token_costs(bench: Bench) -> list[tuple[str, float]]:
    """Microseconds of CPU per token for the parts of the streaming path that run per token."""
    import httpx

    from chat.markdown import render_markdown
    from chat.views import sse
    from config import llm

    assert bench.fake is not None
    fake = bench.fake
    count = 2000
    tokens = [f"word{i} " for i in range(count)]
    messages = [{"role": "user", "content": "hi"}]

    async def through_gateway() -> float:
        fake.reply("".join(tokens), tokens=tokens)
        seen = 0
        started = time.thread_time()  # this thread only: the stub's threads are not counted
        async for delta in llm.stream_chat(messages):
            seen += bool(delta.text)
        return (time.thread_time() - started) / max(seen, 1) * 1e6

    async def bare_json() -> float:
        fake.reply("".join(tokens), tokens=tokens)
        body = {"model": "stub", "messages": messages, "stream": True}
        seen = 0
        async with httpx.AsyncClient() as client:
            started = time.thread_time()
            async with client.stream(
                "POST", f"{fake.base_url}/chat/completions", json=body
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
                        seen += bool((choices[0].get("delta") or {}).get("content"))
            return (time.thread_time() - started) / max(seen, 1) * 1e6

    async def measure() -> tuple[float, float]:
        await through_gateway()  # warm-up: client, connection
        gateway = min([await through_gateway() for _ in range(3)])
        bare = min([await bare_json() for _ in range(3)])
        return gateway, bare

    gateway, bare = asyncio.run(measure())
    started = time.thread_time()
    for token in tokens:
        sse("token", {"text": token}).encode()
    framing = (time.thread_time() - started) / count * 1e6
    reply = "".join(tokens[:20])
    started = time.thread_time()
    for _ in range(100):
        render_markdown(reply)
    once = (time.thread_time() - started) / 100 * 1e6
    started = time.thread_time()
    for _ in range(5):
        for end in range(1, 21):
            render_markdown("".join(tokens[:end]))
    every = (time.thread_time() - started) / 5 / 20 * 1e6
    return [
        ("config.llm.stream_chat (httpx stream, JSON chunks, our delta)", gateway),
        ("the same bytes read with httpx + json.loads only (the parsing floor)", bare),
        ("SSE framing of one token event (chat.views.sse + encode)", framing),
        ("markdown of a 20-token reply rendered once, per token", once / 20),
        ("markdown rendered at every token (what per-token rendering would cost)", every),
    ]


# --- Report ---


def print_context(bench: Bench, setup_s: float, stream_count: int) -> None:
    import django
    import httpx
    import uvicorn
    from django.conf import settings
    from django.db import connection

    from bench.common import load_line

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = cursor.fetchone()[0]
    print(
        f"machine: {cores} cores ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print(load_line() + " at the start (other work shares the machine)")
    if bench.floor:
        print("FLOOR: serving bench/chat_floor.py (the same events; no Django, no database)")
    print(
        f"server: uvicorn {uvicorn.__version__} (workers={bench.workers}), Django "
        f"{django.__version__}; DB pool per process min {pool['min_size']} / max "
        f"{pool['max_size']} (timeout {pool['timeout']:g} s), PostgreSQL max_connections "
        f"{max_connections}; client httpx {httpx.__version__} in this process"
    )
    print(
        f"stub LLM: FakeLLM in its own process, {len(TOKENS)} tokens "
        f"{TOKEN_INTERVAL * 1000:.0f} ms apart (~{len(TOKENS) * TOKEN_INTERVAL:.1f} s a reply); "
        + "; ".join(f"{name}: {how}" for name, how in bench.services.items())
    )
    print(
        f"setup {setup_s:.1f} s (services, migrate, {stream_count} people with a pending reply "
        "each, sessions, uvicorn start)"
    )


def print_sequential(warmup: list[Result], stats: PhaseStats) -> None:
    print()
    print(
        f"1. Server time before the LLM request: {len(stats.results)} sequential streams "
        f"(after {len(warmup)} warm-up), ms"
    )
    print(f"   {'':38}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    rows = [
        (f"trivial authenticated view {TRIVIAL_VIEW}", "trivial_ms"),
        ("send -> stub receives LLM request", "llm_request_ms"),
        ("send -> first SSE byte", "first_byte_ms"),
        ("send -> first token event", "first_token_ms"),
        ("send -> done event", "total_ms"),
    ]
    for label, attribute in rows:
        values = stats.values(attribute)
        print(
            f"   {label:<38}{fmt(values, 0.5)}{fmt(values, 0.95)}{fmt(values, 0.99)}"
            f"{fmt(values, 1.0)}"
        )
    trivial, hot = stats.values("trivial_ms"), stats.values("llm_request_ms")
    if trivial and hot:
        print(
            "   hot path before the model / trivial view: "
            f"p50 {percentile(hot, 0.5) / percentile(trivial, 0.5):.2f}x, "
            f"p95 {percentile(hot, 0.95) / percentile(trivial, 0.95):.2f}x"
        )
    errors = ", ".join(f"{n} x {e}" for e, n in stats.errors.items()) or "none"
    print(
        f"   errors: {errors}; server CPU {stats.cpu_server_s:.1f} s over {stats.wall_s:.1f} s "
        f"wall ({1000 * stats.cpu_server_s / max(len(stats.results), 1):.1f} ms a stream)"
    )


def print_concurrent(stub: PhaseStats, phases: list[PhaseStats]) -> None:
    print()
    print("2-3. Concurrent streams, all sent at once; ms from the send, over the successful ones")
    print(
        f"   {'':28} {'errors':>6} {'wall s':>7} {'1st byte p50':>13} {'p95':>7} "
        f"{'->LLM p50':>10} {'p95':>7} {'1st token p50':>14} {'p95':>7} {'done p95':>8} "
        f"{'CPU s: server':>14} {'client+stub':>12}"
    )
    for stats in [stub, *phases]:
        byte, llm = stats.values("first_byte_ms"), stats.values("llm_request_ms")
        token, done = stats.values("first_token_ms"), stats.values("total_ms")
        print(
            f"   {stats.name:<28} {sum(stats.errors.values()):>6} {stats.wall_s:>7.1f} "
            f"{fmt(byte, 0.5):>13} {fmt(byte, 0.95):>7} {fmt(llm, 0.5):>10} "
            f"{fmt(llm, 0.95):>7} {fmt(token, 0.5):>14} {fmt(token, 0.95):>7} "
            f"{fmt(done, 0.95):>8} {stats.cpu_server_s:>14.1f} {stats.cpu_bench_s:>12.1f}"
        )
    for stats in [stub, *phases]:
        statuses = Counter(r.status for r in stats.results if r.status)
        errors = ", ".join(f"{count} x {error}" for error, count in stats.errors.most_common(5))
        print(
            f"   {stats.name}: HTTP statuses {dict(sorted(statuses.items()))}; "
            f"errors {errors or 'none'}; peak upstream LLM streams {stats.peak_llm_streams()}"
        )
    stub_p95 = stub.values("first_token_ms")
    for stats in phases:
        token = stats.values("first_token_ms")
        if stub_p95 and token:
            print(
                f"   {stats.name}: first-token p95 / the stub's own at {len(stub.results)}: "
                f"{percentile(token, 0.95) / percentile(stub_p95, 0.95):.1f}x"
            )
    if len(phases) > 1:
        small, large = phases[0].values("first_token_ms"), phases[-1].values("first_token_ms")
        if small and large:
            print(
                f"   {phases[-1].name}: first-token p95 / Mnemo's at {len(phases[0].results)}: "
                f"{percentile(large, 0.95) / percentile(small, 0.95):.1f}x"
            )


def print_per_token(costs: list[tuple[str, float]]) -> None:
    print()
    print("4. CPU per token in one process, microseconds (min of 3 runs of 2,000 tokens)")
    for label, micros in costs:
        print(f"   {micros:8.1f}  {label}")


def print_server_log(bench: Bench) -> None:
    """Summarise what the server logged (warnings, errors), if anything."""
    try:
        lines = bench.server_log.read_text(errors="replace").splitlines()
    except OSError:
        return
    interesting = [
        line for line in lines if "Error" in line or "WARNING" in line or "ERROR" in line
    ]
    if not interesting:
        return
    print()
    print(f"server log ({bench.server_log}): {len(interesting)} warning/error lines; most common:")
    counts = Counter(re.sub(r"\d+", "N", line.split(": ", 1)[-1])[:140] for line in interesting)
    for line, count in counts.most_common(6):
        print(f"   {count} x {line}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=default_workers, help="uvicorn workers")
    parser.add_argument(
        "--concurrency",
        default=",".join(str(n) for n in CONCURRENCY),
        help="concurrent streams per phase, comma-separated",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the largest phase")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="serve bench/chat_floor.py (the same events, no Django, no database): the floor",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    concurrency = [int(n) for n in args.concurrency.split(",") if n.strip()]
    # Run as a script from anywhere: the project root must be importable.
    sys.path.insert(0, str(BASE_DIR))
    os.chdir(BASE_DIR)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(workers=max(1, args.workers), floor=args.floor)
    started = time.perf_counter()
    try:
        bench.start_services()
        bench.setup_django()
        sizes = [WARMUP + SEQUENTIAL, *concurrency]
        streams = bench.create_streams(sum(sizes))
        base_url = bench.start_server(streams)
        print_context(bench, time.perf_counter() - started, len(streams))
        profiler = Profiler(bench, args.profile)

        async def run_all() -> None:
            first = sizes[0]
            warmup, stats = await sequential(bench, base_url, streams[:first])
            print_sequential(warmup, stats)
            stub = await stub_direct(bench, STUB_STREAMS)
            phases = []
            offset = first
            for size in concurrency:
                largest = size == max(concurrency)
                chunk = streams[offset : offset + size]
                phases.append(
                    await concurrent(bench, base_url, chunk, profiler if largest else None)
                )
                offset += size
            print_concurrent(stub, phases)

        asyncio.run(run_all())
        print_per_token(per_token_costs(bench))
        profiler.report()
        print_server_log(bench)
        from bench.common import load_line

        print(load_line() + " at the end")
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        bench.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
