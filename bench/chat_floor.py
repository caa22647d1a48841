"""The floor for bench/chat.py: a minimal ASGI app that streams the same events, and nothing else.

`bench/chat.py --floor` serves this instead of Mnemo, with the same uvicorn, workers, client
and stub: POST /chat/m/<id>/stream relays the stub's stream as `token` events and a `done`
event, with no Django, authentication, database, embedding, recall or saving. What it takes
to stream 500 replies on this machine is what no application on it can go below.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

# reply id -> the person's message, written by bench/chat.py (the stub is asked with it, as
# Mnemo would, so that the bench can time the request's arrival at the stub).
CONTENTS: dict[str, str] = json.loads(Path(os.environ["BENCH_FLOOR_CONTENTS"]).read_text())
STUB_URL = os.environ["LLM_BASE_URL"].rstrip("/") + "/chat/completions"
_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )
    return _client


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    parts = scope["path"].strip("/").split("/")
    if scope["method"] != "POST" or len(parts) != 4 or parts[3] != "stream":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
    body = {
        "model": "stub",
        "messages": [{"role": "user", "content": CONTENTS.get(parts[2], "")}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text = []
    async with client().stream("POST", STUB_URL, json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.startswith("data: [DONE]"):
                continue
            choices = json.loads(line[5:]).get("choices") or [{}]
            token = (choices[0].get("delta") or {}).get("content")
            if token:
                text.append(token)
                await send(
                    {
                        "type": "http.response.body",
                        "body": event("token", {"text": token}),
                        "more_body": True,
                    }
                )
    done = {"id": int(parts[2]), "status": "complete", "content": "".join(text), "error": ""}
    await send({"type": "http.response.body", "body": event("done", done), "more_body": False})
