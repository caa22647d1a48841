"""Chat turns on the real local model while background work runs: how many replies are cut off?

Streams N chat replies one after another from llama.cpp's server (SmolLM2-135M, as `make run`
serves it) while two background clients (the worker's concurrency) send extraction-like JSON
completions, titles and summaries, and a monitor polls `GET /v1/models` every 5 s as
`/healthz` does. A reply is cut off when its stream ends without a finish reason.

Layouts compared:
  shared-interrupt  one server, llama_cpp.server's defaults (interrupt_requests on): before
  shared-queue      one server, interrupt_requests off (requests wait their turn)
  separate          `make run` now: a chat server and a background server, interrupts off

    .venv/bin/python bench/local_turns.py [--turns 30] [--layouts separate,shared-interrupt]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bootstrap, load_line, machine_line, pcts

bootstrap()

from config import stack  # noqa: E402

QUESTIONS = [
    "What is a good way to start learning the cello?",
    "Give me three ideas for a rainy Sunday.",
    "How do I keep basil alive indoors?",
    "Explain what a rolling summary is, briefly.",
    "What should I pack for a weekend in Lisbon?",
]
EXTRACT_SCHEMA = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"kind": {"type": "string"}, "content": {"type": "string"}},
                "required": ["kind", "content"],
            },
        }
    },
    "required": ["facts"],
}


@dataclass
class Turn:
    ok: bool
    first_token_s: float
    total_s: float
    tokens: int


@dataclass
class Background:
    calls: int = 0
    errors: int = 0
    health_checks: int = 0
    health_slow: int = 0  # /v1/models slower than the health check's 2 s
    stop: threading.Event = field(default_factory=threading.Event)


def stream_turn(client: httpx.Client, base_url: str, question: str, max_tokens: int) -> Turn:
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    finished = False
    body = {
        "model": stack.LOCAL_MODEL_ALIAS,
        "messages": [
            {"role": "system", "content": "You are Mnemo, a helpful assistant."},
            {"role": "user", "content": question},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "stream": True,
    }
    try:
        with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices", []):
                    if (choice.get("delta") or {}).get("content"):
                        tokens += 1
                        first = first or time.perf_counter() - started
                    if choice.get("finish_reason"):
                        finished = True
    except httpx.HTTPError:
        finished = False
    return Turn(finished, first, time.perf_counter() - started, tokens)


def background_load(base_url: str, state: Background) -> None:
    client = httpx.Client(timeout=120)
    n = 0
    while not state.stop.is_set():
        n += 1
        text = QUESTIONS[n % len(QUESTIONS)]
        kind = n % 3
        if kind == 0:
            extra = {"response_format": {"type": "json_object", "schema": EXTRACT_SCHEMA}}
            messages = [{"role": "user", "content": f"Facts in: I live in Paris. {text}"}]
            max_tokens = 200
        elif kind == 1:
            extra, max_tokens = {}, 24
            messages = [{"role": "user", "content": f"Title for: {text}\nTitle:"}]
        else:
            extra, max_tokens = {}, 120
            messages = [{"role": "user", "content": f"Summarize: Me: {text} Assistant: Sure."}]
        try:
            client.post(
                f"{base_url}/chat/completions",
                json={
                    "model": stack.LOCAL_MODEL_ALIAS,
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                    **extra,
                },
            ).raise_for_status()
            state.calls += 1
        except httpx.HTTPError:
            state.errors += 1


def health_monitor(base_url: str, state: Background) -> None:
    client = httpx.Client(timeout=httpx.Timeout(2.0, connect=2.0))
    while not state.stop.wait(5):
        state.health_checks += 1
        try:
            client.get(f"{base_url}/models")
        except httpx.TimeoutException:
            state.health_slow += 1
        except httpx.HTTPError:
            pass


def run_layout(layout: str, turns: int, max_tokens: int, folder: Path) -> None:
    model = stack.local_model_path()
    chat = stack.LocalModelServer(
        model=model,
        log_path=folder / f"{layout}-chat.log",
        context_tokens=2048,
        interrupt_requests=layout == "shared-interrupt",
    )
    servers = [chat]
    chat_url = chat.start()
    background_url = chat_url
    if layout == "separate":
        background = stack.LocalModelServer(
            model=model, log_path=folder / f"{layout}-bg.log", context_tokens=2048, threads=1
        )
        servers.append(background)
        background_url = background.start()
    state = Background()
    threads = [
        threading.Thread(target=background_load, args=(background_url, state), daemon=True),
        threading.Thread(target=background_load, args=(background_url, state), daemon=True),
        threading.Thread(target=health_monitor, args=(chat_url, state), daemon=True),
    ]
    try:
        for thread in threads:
            thread.start()
        client = httpx.Client(timeout=httpx.Timeout(300, connect=5))
        results = [
            stream_turn(client, chat_url, QUESTIONS[i % len(QUESTIONS)], max_tokens)
            for i in range(turns)
        ]
    finally:
        state.stop.set()
        for server in servers:
            server.stop()
    cut = [t for t in results if not t.ok]
    done = [t for t in results if t.ok]
    print(
        f"{layout:17} cut off {len(cut):2d} / {turns}   "
        f"first token p50/p95/p99 s {pcts([t.first_token_s for t in done])}   "
        f"reply s {pcts([t.total_s for t in done])}   "
        f"background calls {state.calls} (errors {state.errors})   "
        f"/v1/models over 2 s: {state.health_slow} / {state.health_checks}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--layouts", default="shared-interrupt,shared-queue,separate")
    args = parser.parse_args()
    print(machine_line())
    print(load_line())
    print(f"{args.turns} streamed replies of up to {args.max_tokens} tokens, SmolLM2-135M Q4_1")
    with tempfile.TemporaryDirectory(prefix="mnemo-bench-") as folder:
        for layout in args.layouts.split(","):
            run_layout(layout, args.turns, args.max_tokens, Path(folder))
    print(load_line())


if __name__ == "__main__":
    main()
