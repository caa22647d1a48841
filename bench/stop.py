"""Benchmark: how long "Stop" takes to end a reply while the model hangs (sends nothing).

Run: `.venv/bin/python bench/stop.py [runs]` from the repository root. It starts an embedded
PostgreSQL (unless DATABASE_URL is set), a throw-away Redis (unless REDIS_URL is set) and the
fake OpenAI-compatible server of the tests, scripted to hang for LLM_READ_TIMEOUT + 5 s. Each
run sends a message, streams the reply, asks to stop one second in, and measures the time
from the stop request to the stream's end, with the reply's final status.

Prints numbers; asserts nothing about time. Everything it started is stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchDatabase, bootstrap, load_line, machine_line, percentile

READ_TIMEOUT = 60.0


def main(runs: int) -> None:
    bootstrap()
    from config import stack
    from tests.fake_llm import FakeLLM

    database = BenchDatabase("bench-stop")
    database.start()
    redis = None
    if not os.environ.get("REDIS_URL"):
        redis = stack.EmbeddedRedis(stack.data_dir() / "bench-stop" / "redis", persistent=False)
        os.environ["REDIS_URL"] = redis.start()
    fake = FakeLLM().start()
    os.environ.update(
        LLM_BASE_URL=fake.base_url, LLM_READ_TIMEOUT=str(READ_TIMEOUT), LLM_MAX_RETRIES="0"
    )
    try:
        measure(fake, runs)
    finally:
        from bench.common import close_django_connections

        close_django_connections()
        fake.stop()
        if redis is not None:
            redis.stop()
        database.stop()


def measure(fake: Any, runs: int) -> None:
    import django
    from asgiref.sync import async_to_sync
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from accounts.models import User
    from chat import services

    user = User.objects.create_user(f"bench-stop-{secrets.token_hex(4)}@example.com")
    latencies: list[float] = []
    statuses: list[str] = []
    try:
        for _ in range(runs):
            conversation = services.start_conversation(user=user)
            _, reply = services.send_message(
                user=user, conversation_id=conversation.pk, content="Tell me a long story"
            )
            fake.hang(READ_TIMEOUT + 5)
            asked: dict[str, float] = {}

            def stop(reply_id: int = reply.pk, asked: dict[str, float] = asked) -> None:
                asked["at"] = time.perf_counter()
                services.request_stop(user=user, message_id=reply_id)

            timer = threading.Timer(1.0, stop)
            timer.start()

            async def consume(reply_id: int = reply.pk) -> str:
                status = ""
                async for event in services.stream_reply(user=user, message_id=reply_id):
                    if event.kind == "done" and event.message is not None:
                        status = event.message.status
                return status

            statuses.append(async_to_sync(consume)())
            ended = time.perf_counter()
            timer.cancel()
            latencies.append((ended - asked.get("at", ended)) * 1000)
            fake.reset()
    finally:
        user.delete()
    print(machine_line())
    print(load_line())
    print(f"model: hangs (sends nothing); LLM_READ_TIMEOUT={READ_TIMEOUT:.0f} s; runs: {runs}")
    print(
        f"stop request -> stream end: median {percentile(latencies, 0.5):.0f} ms, "
        f"max {max(latencies):.0f} ms; final status: {', '.join(sorted(set(statuses)))}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
