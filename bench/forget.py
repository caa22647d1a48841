"""Benchmark of forgetting one memory (`memory.services.forget`, as the page and API call it).

A person with 1,000 memories learned from 500 chat messages (two facts a message) in 20
conversations, each summarized (a summary quoting some of its messages' sentences and having
read all of them), and 50 people/pets/places named by the facts. Forgets FORGETS memories,
chosen at random, one transaction each, and prints p50 / p95 / max in ms with the load.

Run: `.venv/bin/python bench/forget.py [database name] [--plain]` from the repository root
(`--plain`: the facts name no entity). It starts an
embedded PostgreSQL (unless DATABASE_URL is set), recreates the database (default
bench_forget), migrates, seeds with the real local embedder for what forget embeds (random
vectors for the seeded rows). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

MEMORIES = 1000
CONVERSATIONS = 20
FACTS_PER_MESSAGE = 2
ENTITIES = 50
FORGETS = 60
SEED = 7


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", nargs="?", default="bench_forget")
    parser.add_argument(
        "--plain", action="store_true", help="facts name no entity (by default each names one)"
    )
    args = parser.parse_args()
    name, plain = args.database, args.plain
    common.bootstrap()
    bench_db = common.BenchDatabase("bench-forget")
    bench_db.start()
    import psycopg

    with psycopg.connect(bench_db.admin_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    import os

    os.environ["DATABASE_URL"] = bench_db.admin_url(name)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from chat.models import Conversation, Message
    from memory import embeddings
    from memory import services as memory_services
    from memory.models import ConversationSummary, Entity, Memory

    rng = random.Random(SEED)
    dims = embeddings.EMBEDDING_DIM

    def vector() -> list[float]:
        values = [rng.gauss(0, 1) for _ in range(dims)]
        norm = sum(v * v for v in values) ** 0.5
        return [v / norm for v in values]

    vectors = [vector() for _ in range(50)]
    user = get_user_model().objects.create_user(
        email="forget-bench@bench.invalid", password="x" * 12
    )
    names = [_word(rng).capitalize() for _ in range(ENTITIES)]
    memories: list[Memory] = []
    per_conversation = MEMORIES // FACTS_PER_MESSAGE // CONVERSATIONS
    for c in range(CONVERSATIONS):
        conversation = Conversation.objects.create(user=user, title=f"Chat about {_word(rng)}")
        said: list[str] = []
        last = 0
        for _ in range(per_conversation):
            facts = []
            for _ in range(FACTS_PER_MESSAGE):
                who = rng.choice(names)
                subject = "I" if plain else f"My friend {who}"
                verb = "like" if plain else "likes"
                facts.append(f"{subject} {verb} {_word(rng)} and {_word(rng)}.")
            text = " ".join(facts)
            message = Message.objects.create(
                user=user,
                conversation=conversation,
                role="user",
                content=text,
                status="complete",
            )
            reply = Message.objects.create(
                user=user,
                conversation=conversation,
                role="assistant",
                content=f"Nice, {_word(rng)}!",
                status="complete",
            )
            last = reply.pk
            said += facts[:1]
            for fact in facts:
                memories.append(
                    Memory(
                        user=user,
                        content=fact,
                        embedding=rng.choice(vectors),
                        source_message_id=message.pk,
                        source_conversation_id=conversation.pk,
                        source_excerpt=fact,
                    )
                )
        ConversationSummary.objects.create(
            user=user,
            conversation_id=conversation.pk,
            conversation_title=conversation.title,
            content=" ".join(said[:10]),
            embedding=rng.choice(vectors),
            last_message_id=last,
            message_count=2 * per_conversation,
        )
        del c
    Memory.objects.bulk_create(memories)
    for entity_name in names:
        Entity.objects.create(
            user=user,
            name=entity_name,
            key=entity_name.lower(),
            type="person",
            attributes={"likes": _word(rng)},
        )
    embeddings.embed_one("warm-up")
    ids = list(Memory.objects.filter(user=user).values_list("pk", flat=True))
    rng.shuffle(ids)
    from django.db import connection

    timings, in_sql, statements = [], [], []
    spent = [0.0, 0]

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent[0] += time.perf_counter() - started
            spent[1] += 1

    with connection.execute_wrapper(timed):
        for memory_id in ids[:FORGETS]:
            spent[:] = [0.0, 0]
            started = time.perf_counter()
            memory_services.forget(user=user, memory_id=memory_id)
            timings.append((time.perf_counter() - started) * 1000)
            in_sql.append(spent[0] * 1000)
            statements.append(spent[1])
    print(common.machine_line())
    print(common.load_line())
    print(
        f"forget of one memory ({name}): {MEMORIES} memories, {CONVERSATIONS} summaries, "
        f"{ENTITIES} entities ({'named by no fact' if plain else 'one named by each fact'}), "
        f"{FORGETS} forgets; ms p50 / p95 / max:"
        f"{common.pcts(timings, (0.5, 0.95, 1.0))}; of it in SQL:"
        f"{common.pcts(in_sql, (0.5, 0.95, 1.0))}; statements (median) "
        f"{sorted(statements)[FORGETS // 2]}"
    )
    common.close_django_connections()
    bench_db.stop()


if __name__ == "__main__":
    main()
