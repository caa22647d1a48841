"""A/B check of recall's statement: another revision's RECALL_SQL against this one's.

Run: `.venv/bin/python bench/recall_ab.py [--base main] [--queries 1200] [--timing 300]`
from the repository root. It starts (or reuses) the embedded PostgreSQL of bench/recall.py
(`<data dir>/bench-recall/pg`, unless DATABASE_URL is set) and seeds a database `recall_ab`
with people whose memories have everything recall ranks by (unlike bench/recall.py's):
conversations and source messages (context lifts), dates (dated questions), expired, pinned
and future-expiring rows, recall keys, profile/preference rows (always-on), duplicated
vectors (distance ties), summaries and entities. Queries are worded with the memories' words
(BM25 matches) and often name a time ("in May 2025", "last week").

1. Equality: both statements run prepared with the generic plan on the same connection (as
   `_run_recall` does) with the parameters `recall_parameters` builds; every returned row must
   be the same, in the same order, relevance and the other floats equal to 1e-9 (relative).
   Prints how many queries had text matches, a named time with dated memories, context lifts
   and always-on rows, and exits non-zero on any difference.
2. With --timing N (and bench/recall.py's `recall_100u` database seeded): both statements and
   the bare exact-scan floor, prepared, each on its own connection, interleaved in a shuffled
   order query by query, on random people with 1,000 memories and on the person with 10;
   p50/p95/p99, ratios, and the CPU time each one's server process spent (from /proc: a
   measure that depends far less on the machine's load than wall time).

The base statement is read from `git show <base>:memory/services.py` (its RECALL_CTES and
RECALL_SQL constants, evaluated without importing that module).
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

DIM = 384
DATABASE = "recall_ab"
DATA_VERSION = "bench/recall_ab.py data v1"
SIZES = [5, 10, 40, 120, 300, 600, 1000, 1000, 1500, 2500]
TIME_PHRASES = [
    "last week", "last month", "three weeks ago", "two months ago", "yesterday", "in 2025",
    "last year", "this year", "in May 2025", "in March 2026", "in January 2026",
    "in summer 2025", "in October 2025", "last May", "last September",
]  # fmt: skip


def base_statement(revision: str) -> str:
    """RECALL_SQL as `revision` of memory/services.py defines it (constants only)."""
    source = subprocess.run(
        ["git", "-C", str(BASE_DIR), "show", f"{revision}:memory/services.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.Assign):
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in ("RECALL_CTES", "RECALL_SQL"):
            code = compile(ast.Expression(node.value), "services.py", "eval")
            found[target.id] = eval(code, {}, dict(found))  # constant strings only
    return found["RECALL_SQL"]


def native(sql: str) -> tuple[str, list[str]]:
    """`sql` with $n placeholders and its parameter names in order (as services.py does)."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    return re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql), names


def seed(conn: Any, rng: np.random.Generator) -> list[int]:
    """People with rich memories; returns their user ids."""
    from accounts.models import User
    from memory.models import ConversationSummary, Entity, Memory

    now = datetime.now(UTC)
    words = [f"w{i:03d}x" for i in range(400)]
    topics = rng.standard_normal((64, DIM))
    people = User.objects.bulk_create(
        User(email=f"ab{i}@recall.bench.invalid") for i in range(len(SIZES) * 3)
    )
    ids = [int(p.pk) for p in people]
    memories: list[Memory] = []
    kinds = ["profile", "preference", "fact", "task"]
    for index, person in enumerate(people):
        count = SIZES[index % len(SIZES)]
        vectors = topics[rng.integers(64, size=count)] * 0.7 + rng.standard_normal((count, DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for j in range(1, count):
            if rng.random() < 0.03:  # ties: the same vector twice
                vectors[j] = vectors[int(rng.integers(j))]
        for j in range(count):
            created = now - timedelta(days=float(rng.uniform(0, 730)))
            conversation = int(rng.integers(1, 30)) + index * 100 if rng.random() < 0.7 else None
            message = (
                int(rng.integers(1, 60)) + (conversation or 0) * 1000
                if conversation and rng.random() < 0.95
                else None
            )
            roll = rng.random()
            expires = (
                now - timedelta(days=1)
                if roll < 0.05
                else now + timedelta(days=30)
                if roll < 0.10
                else None
            )
            content = " ".join(words[int(k)] for k in rng.zipf(1.3, int(rng.integers(3, 12))) % 400)
            keys = (
                " ".join(words[int(k)] for k in rng.integers(400, size=5))
                if rng.random() < 0.1
                else ""
            )
            memories.append(
                Memory(
                    user=person,
                    kind=kinds[int(rng.choice(4, p=[0.04, 0.04, 0.78, 0.14]))],
                    content=content,
                    recall_keys=keys,
                    embedding=vectors[j].tolist(),
                    importance=round(float(rng.uniform(0.1, 0.9)), 1),
                    pinned=bool(rng.random() < 0.03),
                    happened_at=(
                        now - timedelta(days=float(rng.uniform(0, 730)))
                        if rng.random() < 0.5
                        else None
                    ),
                    source_conversation_id=conversation,
                    source_message_id=message,
                    created_at=created,
                    updated_at=created + timedelta(days=float(rng.uniform(0, 10))),
                    expires_at=expires,
                )
            )
        for c in range(int(rng.integers(0, 6))):
            vector = rng.standard_normal(DIM)
            ConversationSummary.objects.create(
                user=person,
                conversation_id=index * 100 + c + 1,
                content=" ".join(words[int(k)] for k in rng.integers(400, size=8)),
                last_message_id=0,
                embedding=(vector / np.linalg.norm(vector)).tolist(),
            )
        for e in range(3):
            Entity.objects.create(
                user=person, name=f"Name{e}", key=f"name{e}", type="person", attributes={}
            )
    Memory.objects.bulk_create(memories, batch_size=2000)
    conn.execute("VACUUM (ANALYZE) memory_memory")
    name = common.scalar(conn, "SELECT current_database()")
    conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{DATA_VERSION}'")
    return ids


def make_queries(conn: Any, people: list[int], count: int, rng: np.random.Generator) -> list[Any]:
    rows: dict[int, list[tuple[str, str]]] = {}
    for user_id, content, embedding in conn.execute(
        "SELECT user_id, content, embedding::text FROM memory_memory WHERE user_id = ANY(%s)",
        [people],
    ):
        rows.setdefault(user_id, []).append((content, embedding))
    queries = []
    for _ in range(count):
        user_id = people[int(rng.integers(len(people)))]
        content, embedding = rows[user_id][int(rng.integers(len(rows[user_id])))]
        vector = np.array([float(x) for x in embedding[1:-1].split(",")])
        roll = rng.random()
        if roll < 0.1:
            query_vector = vector  # exactly a stored vector: ties at distance 0
        elif roll < 0.2:
            query_vector = rng.standard_normal(DIM)
        else:
            query_vector = 0.6 * vector + 0.4 * rng.standard_normal(DIM) / math.sqrt(DIM) * 8
        query_vector = query_vector / np.linalg.norm(query_vector)
        terms = content.split()
        picked = [terms[int(i)] for i in rng.integers(len(terms), size=int(rng.integers(0, 4)))]
        text = "what about " + " ".join(picked)
        if rng.random() < 0.5:
            text += " " + TIME_PHRASES[int(rng.integers(len(TIME_PHRASES)))]
        if rng.random() < 0.1:
            text += " and Name1"
        queries.append((user_id, text + "?", query_vector.astype(np.float32).tolist()))
    return queries


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


def equality(url: str, base_sql: str, count: int) -> int:
    import psycopg

    from accounts.models import User
    from memory import services

    rng = np.random.default_rng(20261130)
    conn = psycopg.connect(url, autocommit=True)
    comment = common.scalar(
        conn,
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
        "WHERE datname = current_database()",
    )
    if comment != DATA_VERSION:
        people = seed(conn, rng)
    else:
        people = [
            r[0] for r in conn.execute("SELECT id FROM accounts_user WHERE email LIKE 'ab%%'")
        ]
    people.sort()
    queries = make_queries(conn, people, count, rng)
    conn.execute("SET plan_cache_mode = force_generic_plan")
    cursor = psycopg.RawCursor(conn)
    old_sql, old_names = native(base_sql)
    new_sql, new_names = native(services.RECALL_SQL)
    probe_sql, probe_names = native(
        services.RECALL_CTES
        + "SELECT (SELECT count(*) FROM text_top), (SELECT count(*) FROM dated), "
        "(SELECT count(*) FROM context), (SELECT count(*) FROM always_on)"
    )
    differ = 0
    seen = {"text matches": 0, "named a time": 0, "dated memories": 0, "context lifts": 0}
    seen |= {"always-on rows": 0, "rows compared": 0, "no context weight": 0}
    for number, (user_id, text, vector) in enumerate(queries):
        weights = services.WEIGHTS
        if number % 7 == 3:
            weights = services.RecallWeights()  # context 0: no lifts at all
            seen["no context weight"] += 1
        limit = (5, 8, 12)[number % 3]
        parameters = services.recall_parameters(
            user=User(pk=user_id), query=text, vector=vector, limit=limit, weights=weights,
            exclude_conversation_id=(user_id % 7) or None,
        )  # fmt: skip
        if number % 5 == 1:
            parameters["min_similarity"] = -1.0  # every candidate passes the floor
        cursor.execute(old_sql, [parameters[n] for n in old_names], prepare=True)
        old = cursor.fetchall()
        cursor.execute(new_sql, [parameters[n] for n in new_names], prepare=True)
        new = cursor.fetchall()
        cursor.execute(probe_sql, [parameters[n] for n in probe_names], prepare=True)
        texts, dated, context, always = cursor.fetchall()[0]
        seen["text matches"] += texts > 0
        seen["named a time"] += parameters["period_start"] != parameters["period_end"]
        seen["dated memories"] += dated > 0
        seen["context lifts"] += context > 0
        seen["always-on rows"] += always
        seen["rows compared"] += len(old)
        if len(old) != len(new) or not all(same(a, b) for a, b in zip(old, new, strict=True)):
            differ += 1
            if differ <= 5:
                print(f"DIFFERENT: user {user_id} {text!r}")
                for a, b in zip(old, new, strict=False):
                    print("   old", a[:3], a[6:11], "\n   new", b[:3], b[6:11])
    print(
        f"equality: {len(queries)} queries, {differ} differ; "
        + ", ".join(f"{k} {v}" for k, v in seen.items())
    )
    return differ


def backend_cpu_ms(pid: int) -> float:
    """CPU time (user + system) the server process `pid` has used, ms (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def timing(url: str, base_sql: str, count: int) -> None:
    """Wall time of each statement and the CPU time its server process spent (each statement
    on its own connection, so the CPU time is its own; it depends far less on the load)."""
    import psycopg

    from accounts.models import User
    from memory import services

    rng = np.random.default_rng(7)
    statements = {
        "floor": native(
            "SELECT id FROM memory_memory WHERE user_id = %(user_id)s "
            "ORDER BY embedding <=> %(embedding)s::vector LIMIT %(always)s"
        ),
        "base": native(base_sql),
        "this": native(services.RECALL_SQL),
    }
    connections = {name: psycopg.connect(url, autocommit=True) for name in statements}
    for conn in connections.values():
        conn.execute("SET plan_cache_mode = force_generic_plan")
    pids = {
        name: int(common.scalar(conn, "SELECT pg_backend_pid()"))
        for name, conn in connections.items()
    }
    conn = connections["floor"]
    regular = [
        r[0]
        for r in conn.execute(
            "SELECT user_id FROM memory_memory GROUP BY user_id HAVING count(*) = 1000"
        )
    ]
    small = common.scalar(
        conn, "SELECT user_id FROM memory_memory GROUP BY user_id HAVING count(*) = 10"
    )
    for who, users in (("1,000 memories", regular), ("10 memories", [small])):
        times: dict[str, list[float]] = {name: [] for name in statements}
        cpu: dict[str, float] = dict.fromkeys(statements, 0.0)
        for number in range(count + 20):
            vector = rng.standard_normal(DIM)
            parameters = services.recall_parameters(
                user=User(pk=users[int(rng.integers(len(users)))]),
                query="what about things?",
                vector=(vector / np.linalg.norm(vector)).tolist(),
                limit=8,
            )
            order = list(statements.items())
            rng.shuffle(order)
            for name, (sql, names) in order:
                cursor = psycopg.RawCursor(connections[name])
                used = backend_cpu_ms(pids[name])
                started = time.perf_counter()
                cursor.execute(sql, [parameters[n] for n in names], prepare=True)
                cursor.fetchall()
                if number >= 20:
                    times[name].append((time.perf_counter() - started) * 1000)
                    cpu[name] += backend_cpu_ms(pids[name]) - used
        floor = common.percentile(times["floor"], 0.5), common.percentile(times["floor"], 0.95)
        print(f"timing, {who}, {count} queries, {common.load_line()}")
        for name, values in times.items():
            p50, p95 = common.percentile(values, 0.5), common.percentile(values, 0.95)
            print(
                f"   {name:6s} p50/p95/p99 {common.pcts(values)}   / floor "
                f"{p50 / floor[0]:5.2f}x {p95 / floor[1]:5.2f}x   server CPU "
                f"{cpu[name] / count:6.3f} ms a query "
                f"({cpu[name] / cpu['floor']:4.2f}x the floor's)"
            )
    for conn in connections.values():
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the revision to compare with")
    parser.add_argument("--queries", type=int, default=1200, help="queries for equality")
    parser.add_argument("--timing", type=int, default=0, help="timed queries (0: none)")
    args = parser.parse_args()
    common.bootstrap()
    bench_db = common.BenchDatabase("bench-recall")
    differ = 0
    try:
        bench_db.start()
        import django

        django.setup()
        from django.core.management import call_command

        base_sql = base_statement(args.base)
        import psycopg

        with psycopg.connect(bench_db.admin_url("postgres"), autocommit=True) as admin:
            comment = common.scalar(
                admin,
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                [DATABASE],
            )
            if comment != DATA_VERSION:  # absent, or seeded by another version: seed anew
                admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{DATABASE}"')
        with common.django_database(DATABASE):
            call_command("migrate", interactive=False, verbosity=0)
            if args.queries:
                differ = equality(bench_db.admin_url(DATABASE), base_sql, args.queries)
        if args.timing:
            timing(bench_db.admin_url("recall_100u"), base_sql, args.timing)
    finally:
        common.close_django_connections()
        bench_db.stop()
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
