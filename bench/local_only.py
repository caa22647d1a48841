"""Benchmark: what leaving local-only memories out of a hosted prompt costs recall.

Run: `.venv/bin/python bench/local_only.py [--memories 1000] [--queries 200]` from the
repository root. It starts an embedded PostgreSQL in `<data dir>/bench-local-only/pg` (unless
DATABASE_URL is set), creates and migrates the database `local_only_bench` once, and seeds one
person with N memories (synthetic 384-d unit vectors; one in ten reads as health, so it is
local only by default; a few profile and preference rows); each query is near one of them.
Then it times recall() with the
query vector given, alternating query by query between a local endpoint's recall (no
filtering: the code path of the zero-config default) and a hosted endpoint's (the person's
rules and the recalled memories' own settings read, local-only items held back), and prints
p50/p95/p99 of each and how many items were held back per query. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

DATABASE = "local_only_bench"
DIM = 384
WARMUP = 20
SEED = 16


def ensure_database(bench_db: common.BenchDatabase) -> None:
    import psycopg

    with psycopg.connect(bench_db.admin_url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def seed(memories: int) -> object:
    import numpy as np
    from django.utils import timezone

    from accounts.models import User
    from memory.models import Memory

    user, _ = User.objects.get_or_create(email="bench-local-only@example.com")
    if Memory.objects.filter(user=user).count() == memories:
        return user
    Memory.objects.filter(user=user).delete()
    rng = np.random.default_rng(SEED)
    vectors = rng.normal(size=(memories, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = timezone.now()
    rows = []
    for i, vector in enumerate(vectors):
        if i % 10 == 0:
            content, kind = f"I take medication {i} for my asthma", Memory.Kind.FACT
        elif i % 50 == 1:
            content, kind = f"I prefer answers in style {i}", Memory.Kind.PREFERENCE
        elif i % 50 == 2:
            content, kind = f"I work on project {i} at the studio", Memory.Kind.PROFILE
        else:
            content, kind = f"I went hiking near lake {i} with friends", Memory.Kind.FACT
        rows.append(
            Memory(
                user=user,
                kind=kind,
                content=content,
                embedding=vector.tolist(),
                created_at=now,
                updated_at=now,
            )
        )
    Memory.objects.bulk_create(rows, batch_size=500)
    return user


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    common.bootstrap()
    bench_db = common.BenchDatabase("bench-local-only")
    try:
        bench_db.start()
        ensure_database(bench_db)
        import django

        django.setup()
        import numpy as np
        from django.core.management import call_command

        from memory import services

        print(common.machine_line())
        print(f"{common.load_line()} at the start (timings below share the machine)")
        with common.django_database(DATABASE):
            call_command("migrate", verbosity=0)
            user = seed(args.memories)
            # The seeded vectors again (same seed): each query is near one of the memories.
            memories = np.random.default_rng(SEED).normal(size=(args.memories, DIM))
            memories /= np.linalg.norm(memories, axis=1, keepdims=True)
            rng = np.random.default_rng(SEED + 1)
            timings: dict[bool, list[float]] = {False: [], True: []}
            held: list[int] = []
            for number in range(WARMUP + args.queries):
                noise = rng.normal(size=DIM) / np.sqrt(DIM)
                vector = (memories[rng.integers(args.memories)] + 0.6 * noise).astype(np.float32)
                vector /= np.linalg.norm(vector)
                for hosted in (False, True):
                    started = time.perf_counter()
                    recalled = services.recall(
                        user=user,
                        query="what about the lake and my medication?",
                        embedding=vector.tolist(),
                        hosted=hosted,
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    if number >= WARMUP:
                        timings[hosted].append(elapsed)
                        if hosted:
                            held.append(len(recalled.held_back))
            print(
                f"recall() for one person with {args.memories:,} memories "
                f"({args.memories // 10:,} health), {args.queries} queries, vector given, ms:"
            )
            for hosted, label in ((False, "local endpoint "), (True, "hosted endpoint")):
                print(f"  {label}: {common.pcts(timings[hosted])}")
            print(
                f"  held back per hosted query: mean {sum(held) / len(held):.2f}, max {max(held)}"
            )
            print(f"{common.load_line()} at the end")
    finally:
        common.close_django_connections()
        bench_db.stop()


if __name__ == "__main__":
    main()
