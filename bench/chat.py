"""Benchmark of the chat hot path: POST /chat/m/<id>/stream served by uvicorn against a stub LLM.

Run: `.venv/bin/python bench/chat.py` from the repository root. It needs no running stack:
it starts an embedded PostgreSQL (unless DATABASE_URL is set), a throw-away Redis (unless
REDIS_URL is set), the fake OpenAI-compatible server of the tests (20 tokens, 50 ms apart) and
uvicorn as a subprocess, then measures

1. the server time before the model is asked: sequential single streams, from the client
   sending the POST to the stub receiving the chat-completion request (wall clock, both on
   this machine), i.e. auth, claim, prompt assembly and recall;
2. 100 and then 500 concurrent streams: errors, time to the first SSE byte and to the first
   `token` event, total wall time.

Prints numbers; asserts nothing about time. Everything it started is stopped at the end.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import platform
import re
import resource
import secrets
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

WARMUP = 2  # streams before the sequential measurement (process start, pools, imports)
SEQUENTIAL = 50
CONCURRENCY = (100, 500)
TOKENS = [f"word{i} " for i in range(20)]  # the stub's reply, one chunk per token
TOKEN_INTERVAL = 0.05  # seconds between two streamed tokens
POOL_MAX = int(os.environ.get("BENCH_DATABASE_POOL_MAX", "20"))
PHASE_TIMEOUT = 120.0  # seconds, per phase: nothing can hang
EMAIL_DOMAIN = "bench.invalid"


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


# --- Services ---


class Bench:
    """What the benchmark starts, so that `stop()` can take exactly that down again."""

    def __init__(self) -> None:
        from config import stack

        self.root = stack.data_dir() / "bench"
        self.postgres: Any = None
        self.redis: Any = None
        self.fake: Any = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = self.root / "uvicorn.log"
        self.django_ready = False
        self.session_keys: list[str] = []
        self.run_id = secrets.token_hex(4)
        self.services: dict[str, str] = {}

    def start_services(self) -> None:
        from config import stack
        from tests import fake_llm

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
        # The stub must accept 500 connections at once: a deeper listen backlog than the
        # socketserver default of 5 (one thread per connection, daemon threads). And
        # TCP_NODELAY, as real servers do: otherwise Nagle holds the first token (written
        # just after the headers) until the delayed ACK, adding 40 ms that are not the app's.
        fake_llm._Server.request_queue_size = 1024
        fake_llm._Handler.disable_nagle_algorithm = True
        self.fake = fake_llm.FakeLLM().start()
        os.environ.update(
            {
                "LLM_BASE_URL": self.fake.base_url,
                "CHAT_RATE_LIMIT_PER_MINUTE": "0",
                "CHAT_DAILY_TOKEN_BUDGET": "0",
                "DATABASE_POOL_MAX": str(POOL_MAX),
                "DJANGO_SETTINGS_MODULE": "config.settings",
            }
        )
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

    def start_server(self) -> str:
        from config import stack

        port = stack.free_port()
        env = os.environ.copy()
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.server_log, "wb") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "config.asgi:application",
                 "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                 "--log-level", "warning", "--timeout-graceful-shutdown", "5"],
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
    for _ in range(count):
        fake.reply("".join(TOKENS), tokens=TOKENS, delay=TOKEN_INTERVAL)


def attach_llm_times(fake: Any, streams: list[Stream], results: list[Result]) -> None:
    """Match each stream to the stub's record of its chat request, by the message text."""
    received: dict[str, float] = {}
    for request in fake.requests:
        if request.path == "/v1/chat/completions" and isinstance(request.json, dict):
            messages = request.json.get("messages") or [{}]
            received.setdefault(str(messages[-1].get("content")), request.received_at)
    for stream, result in zip(streams, results, strict=True):
        if stream.content in received and result.sent_at:
            result.llm_request_ms = (received[stream.content] - result.sent_at) * 1000


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def sequential(
    bench: Bench, base_url: str, streams: list[Stream]
) -> tuple[list[Result], PhaseStats]:
    """Warm-up streams, then one stream at a time; returns (warm-up results, stats)."""
    assert bench.server is not None
    queue_replies(bench.fake, len(streams))
    warmup: list[Result] = []
    results: list[Result] = []
    async with make_client(4) as client:
        async with asyncio.timeout(PHASE_TIMEOUT):
            for stream in streams[:WARMUP]:
                warmup.append(await run_stream(client, base_url, stream))
            cpu_server, cpu_bench = cpu_seconds(bench.server.pid), cpu_seconds(os.getpid())
            started = time.perf_counter()
            for stream in streams[WARMUP:]:
                results.append(await run_stream(client, base_url, stream))
    stats = PhaseStats(f"{len(results)} sequential", results, time.perf_counter() - started)
    stats.cpu_server_s = cpu_seconds(bench.server.pid) - cpu_server
    stats.cpu_bench_s = cpu_seconds(os.getpid()) - cpu_bench
    attach_llm_times(bench.fake, streams[:WARMUP], warmup)
    attach_llm_times(bench.fake, streams[WARMUP:], results)
    return warmup, stats


async def concurrent(bench: Bench, base_url: str, streams: list[Stream]) -> PhaseStats:
    assert bench.server is not None
    queue_replies(bench.fake, len(streams))
    async with make_client(len(streams) + 10) as client:
        cpu_server, cpu_bench = cpu_seconds(bench.server.pid), cpu_seconds(os.getpid())
        started = time.perf_counter()
        tasks = [asyncio.create_task(run_stream(client, base_url, s)) for s in streams]
        _, pending = await asyncio.wait(tasks, timeout=PHASE_TIMEOUT)
        wall = time.perf_counter() - started
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
    stats.cpu_server_s = cpu_seconds(bench.server.pid) - cpu_server
    stats.cpu_bench_s = cpu_seconds(os.getpid()) - cpu_bench
    attach_llm_times(bench.fake, streams, results)
    return stats


# --- Report ---


def print_context(bench: Bench, setup_s: float, stream_count: int) -> None:
    import django
    import httpx
    import uvicorn
    from django.conf import settings

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    print(
        f"machine: {cores} cores ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print(
        f"server: uvicorn {uvicorn.__version__} (workers=1), Django {django.__version__}; "
        f"DB pool per process min {pool['min_size']} / max {pool['max_size']} "
        f"(timeout {pool['timeout']:g} s); client httpx {httpx.__version__} in this process"
    )
    print(
        f"stub LLM: FakeLLM in this process, {len(TOKENS)} tokens {TOKEN_INTERVAL * 1000:.0f} ms "
        f"apart (~{len(TOKENS) * TOKEN_INTERVAL:.1f} s a reply); "
        + "; ".join(f"{name}: {how}" for name, how in bench.services.items())
    )
    print(
        f"setup {setup_s:.1f} s (services, migrate, {stream_count} users with a pending reply "
        "each, sessions, uvicorn start)"
    )


def print_sequential(warmup: list[Result], stats: PhaseStats) -> None:
    print()
    print(
        f"1. Server time before the LLM request: {len(stats.results)} sequential streams "
        f"(after {len(warmup)} warm-up), ms"
    )
    print(f"   {'':34}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    rows = [
        ("send -> stub receives LLM request", "llm_request_ms"),
        ("send -> first SSE byte", "first_byte_ms"),
        ("send -> first token event", "first_token_ms"),
        ("send -> done event", "total_ms"),
    ]
    for label, attribute in rows:
        values = stats.values(attribute)
        print(
            f"   {label:<34}{fmt(values, 0.5)}{fmt(values, 0.95)}{fmt(values, 0.99)}"
            f"{fmt(values, 1.0)}"
        )
    for index, result in enumerate(warmup):
        llm = f"{result.llm_request_ms:.1f}" if result.llm_request_ms is not None else "-"
        ttft = f"{result.first_token_ms:.1f}" if result.first_token_ms is not None else "-"
        print(f"   warm-up #{index + 1}: send -> LLM request {llm} ms, -> first token {ttft} ms")
    errors = ", ".join(f"{n} x {e}" for e, n in stats.errors.items()) or "none"
    print(
        f"   errors: {errors}; server CPU {stats.cpu_server_s:.1f} s over {stats.wall_s:.1f} s wall"
    )


def print_concurrent(phases: list[PhaseStats]) -> None:
    print()
    print("2. Concurrent streams, all sent at once; ms from the send, over the successful streams")
    print(
        f"   {'streams':>7} {'errors':>6} {'wall s':>7} {'1st byte p50':>13} {'p95':>7} "
        f"{'->LLM p50':>10} {'p95':>7} {'1st token p50':>14} {'p95':>7} {'done p95':>8} "
        f"{'peak LLM streams':>17} {'CPU s: server':>14} {'client+stub':>12}"
    )
    for stats in phases:
        byte, llm = stats.values("first_byte_ms"), stats.values("llm_request_ms")
        token, done = stats.values("first_token_ms"), stats.values("total_ms")
        print(
            f"   {len(stats.results):>7} {sum(stats.errors.values()):>6} {stats.wall_s:>7.1f} "
            f"{fmt(byte, 0.5):>13} {fmt(byte, 0.95):>7} {fmt(llm, 0.5):>10} "
            f"{fmt(llm, 0.95):>7} {fmt(token, 0.5):>14} {fmt(token, 0.95):>7} "
            f"{fmt(done, 0.95):>8} {stats.peak_llm_streams():>17} "
            f"{stats.cpu_server_s:>14.1f} {stats.cpu_bench_s:>12.1f}"
        )
    for stats in phases:
        for error, count in stats.errors.most_common(5):
            print(f"   {stats.name}: {count} x {error}")


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


def main() -> None:
    # Run as a script from anywhere: the project root must be importable.
    sys.path.insert(0, str(BASE_DIR))
    os.chdir(BASE_DIR)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench()
    started = time.perf_counter()
    try:
        bench.start_services()
        bench.setup_django()
        sizes = [WARMUP + SEQUENTIAL, *CONCURRENCY]
        streams = bench.create_streams(sum(sizes))
        base_url = bench.start_server()
        print_context(bench, time.perf_counter() - started, len(streams))

        async def run_all() -> None:
            first = sizes[0]
            warmup, stats = await sequential(bench, base_url, streams[:first])
            print_sequential(warmup, stats)
            phases = []
            offset = first
            for size in CONCURRENCY:
                phases.append(await concurrent(bench, base_url, streams[offset : offset + size]))
                offset += size
            print_concurrent(phases)

        asyncio.run(run_all())
        print_server_log(bench)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        bench.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
