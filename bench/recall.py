"""Benchmark of recall, the hot path's one SQL query, and of exact scan versus a global HNSW index.

Run: `.venv/bin/python bench/recall.py [--users 100|1000] [--hnsw none|100k|auto|1m]
[--reseed]` from the repository root. It starts an embedded PostgreSQL in
`<data dir>/bench-recall/pg` (unless DATABASE_URL is set) and keeps two seeded databases
there between runs (seeding is skipped when the row counts and the data version written on
the database match; --reseed forces it):

- `recall_10u`:   10 users x 1,000 memories + one user with 10 + one with 10,000  (20,010 rows)
- `recall_<N>u`:  N users x 1,000 memories + the same two users: --users 100 (the default,
                  110,010 rows) or 1000 (1,010,010 rows; seeding takes several minutes)

Memories are synthetic: 384-d unit vectors around 128 shared topics (each user talks about
32 of them, so a topic is shared by a quarter of the users, as people talk about the same
things; a memory's cosine to its topic is about 0.7), short texts made of the topic's
words so that full-text search matches, a few profile/preference rows per user and the rest
facts and tasks, written in an interleaved order as if over time. They are loaded with a
binary COPY. Then it reports:

1. recall() latency p50/p95/p99 (200 queries after 20 warm-up) for a user with 10, 1,000
   (a random user each query) and 10,000 memories, with the query vector given and with
   recall embedding the text (local MiniLM), on both databases, next to the exact-scan
   floor (a bare `SELECT id FROM memory_memory WHERE user_id = %s ORDER BY embedding <=> q
   LIMIT k` over the same person's rows, alternating with recall query by query) and the
   ratio of recall's p50 and p95 to the floor's;
2. on the larger database, the overlap of recall's vector top 5 (the `vector_top` CTE of
   recall's own statement, with the parameters recall() builds) with an exact brute-force
   top 5 computed in numpy over the same user's rows (200 queries);
3. the same overlap and the latency of a global HNSW index (pgvector, cosine, m=16,
   ef_construction=64) on a copy of the table, queried `WHERE user_id = X ORDER BY
   embedding <=> q LIMIT 5` with hnsw.iterative_scan off, relaxed_order and strict_order;
   built on 100 users x 1,000 (100k rows), then tried on all 1M rows with CREATE INDEX
   cancelled after 10 minutes (unbounded with --hnsw=1m, skipped with --hnsw=100k; the
   whole comparison is skipped with --hnsw=none, the default). The copy is dropped at the
   end, so the databases are left as the app expects.

Index use is read from pg_stat_user_indexes (idx_scan deltas), not only from EXPLAIN.
Prints numbers; asserts nothing about time. Stops the PostgreSQL it started.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

Vectors = npt.NDArray[np.float32]

DIM = 384
SEED = 20_240_611
TOPICS = 128
TOPICS_PER_USER = 32
TOPIC_WEIGHT = 0.7  # a memory = 0.7 * its topic + 0.71 * noise (unit), normalized
QUERY_WEIGHT = 0.6  # a query = 0.6 * one of the user's memories + 0.8 * noise, normalized
PER_USER = 1_000
SMALL_USER = 10
BIG_USER = 10_000
SMALL_DB_USERS = 10
DOMAIN = "recall.bench.invalid"
QUERIES = 200
WARMUP = 20
COPY_USERS_PER_BATCH = 20
HNSW_SAMPLE_USERS = 100  # the copy indexed first: 100 users x 1,000 = 100k rows
HNSW_TABLE = "bench_hnsw_memory"
HNSW_INDEX = "bench_hnsw_memory_embedding"
HNSW_1M_LIMIT_S = 600.0  # build on all rows only if the projected build takes at most this
BUDGET_S = 25 * 60.0
KIND_NAMES = ("profile", "preference", "fact", "task")
IMPORTANCE = (0.8, 0.7, 0.5, 0.6)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COPY_COLUMNS = (
    "user_id", "kind", "content", "embedding", "importance", "pinned",
    "created_at", "updated_at", "confirmations", "source_excerpt", "source_deleted",
)  # fmt: skip


# --- Synthetic data ---


def vocabulary(count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct pronounceable non-words (no English stop words among them)."""
    onsets = [*"bcdfghjklmnprstvz", "br", "cr", "dr", "fl", "gr", "pl", "st", "tr"]
    vowels = [*"aeiou", "ai", "ea", "oo"]
    codas = ["", "n", "r", "s", "l", "m", "nd", "st"]
    words: dict[str, None] = {}
    while len(words) < count:
        syllables = int(rng.integers(2, 4))
        word = (
            "".join(
                onsets[int(rng.integers(len(onsets)))] + vowels[int(rng.integers(len(vowels)))]
                for _ in range(syllables)
            )
            + codas[int(rng.integers(len(codas)))]
        )
        words.setdefault(word, None)
    return list(words)


@dataclass
class World:
    """What every user shares: topic directions, their words, and other words."""

    centroids: Vectors
    topic_words: list[list[str]]
    other_words: list[str]

    @classmethod
    def make(cls) -> World:
        rng = np.random.default_rng(SEED)
        centroids = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        words = vocabulary(TOPICS * 4 + 2000, rng)
        topic_words = [words[4 * t : 4 * t + 4] for t in range(TOPICS)]
        return cls(centroids, topic_words, words[TOPICS * 4 :])


def normalized(matrix: Vectors) -> Vectors:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class UserData:
    kinds: npt.NDArray[np.int64]
    contents: list[str]
    vectors: Vectors
    created_us: npt.NDArray[np.int64]  # microseconds since 2000-01-01 UTC
    updated_us: npt.NDArray[np.int64]


def user_data(world: World, key: int, count: int, now_us: int) -> UserData:
    """One person's `count` memories, deterministic given `key`."""
    rng = np.random.default_rng([SEED, key])
    topics = rng.choice(TOPICS, size=min(TOPICS_PER_USER, count), replace=False)
    memory_topics = topics[rng.integers(len(topics), size=count)]
    noise = rng.standard_normal((count, DIM)).astype(np.float32) / math.sqrt(DIM)
    vectors = normalized(
        TOPIC_WEIGHT * world.centroids[memory_topics]
        + math.sqrt(1 - TOPIC_WEIGHT**2) * normalized(noise)
    )
    # A few always-on memories (profile, preference), the rest facts (3/4) and tasks (1/4).
    profiles, preferences = min(8, count // 5), min(16, count // 5)
    rest = count - profiles - preferences
    kinds = np.array(
        [0] * profiles + [1] * preferences + [2] * (rest - rest // 4) + [3] * (rest // 4),
        dtype=np.int64,
    )
    rng.shuffle(kinds)
    picks = rng.integers(0, 4, size=(count, 2))
    others = rng.integers(0, len(world.other_words), size=(count, 2))
    contents = []
    for i in range(count):
        words = world.topic_words[int(memory_topics[i])]
        t1, t2 = words[picks[i, 0]], words[(picks[i, 0] + 1 + picks[i, 1] % 3) % 4]
        g1, g2 = world.other_words[others[i, 0]], world.other_words[others[i, 1]]
        kind = kinds[i]
        if kind == 0:
            contents.append(f"My {t1} is {t2} in {g1}")
        elif kind == 1:
            contents.append(f"I prefer {t1} {t2} over {g1}")
        elif kind == 2:
            contents.append(f"I {t1} the {t2} with {g1} and {g2}")
        else:
            contents.append(f"I am working on {t1} {t2} for {g1}")
    two_years_us = 730 * 86_400 * 1_000_000
    created = now_us - rng.integers(0, two_years_us, size=count)
    updated = created + (rng.random(count) * (now_us - created)).astype(np.int64)
    return UserData(kinds, contents, vectors, created, updated)


# --- Binary COPY into memory_memory ---

_I2 = struct.Struct("!h")
_I4 = struct.Struct("!i")
_ROW_HEAD = struct.Struct("!hiq")  # field count, then user_id (length 8, int8)
_FLOAT8 = struct.Struct("!id")
_TIMES = struct.Struct("!iqiq")
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = _I2.pack(-1)
_VECTOR_HEAD = struct.pack("!ihh", 4 + 4 * DIM, DIM, 0)  # pgvector: dim, unused, floats
_KIND_FIELDS = [_I4.pack(len(k)) + k.encode() for k in KIND_NAMES]
_IMPORTANCE_FIELDS = [_FLOAT8.pack(8, value) for value in IMPORTANCE]
_PINNED_FALSE = _I4.pack(1) + b"\x00"
# confirmations 0, source_excerpt '', source_deleted false
_TAIL = _I4.pack(4) + _I4.pack(0) + _I4.pack(0) + _I4.pack(1) + b"\x00"


def copy_rows(user_id: int, data: UserData) -> list[bytes]:
    """The binary COPY tuples of one user's memories (COPY_COLUMNS order)."""
    big_endian = data.vectors.astype(">f4")
    head = _ROW_HEAD.pack(len(COPY_COLUMNS), 8, user_id)
    rows = []
    for i, content in enumerate(data.contents):
        text = content.encode()
        kind = int(data.kinds[i])
        rows.append(
            b"".join(
                (
                    head,
                    _KIND_FIELDS[kind],
                    _I4.pack(len(text)),
                    text,
                    _VECTOR_HEAD,
                    big_endian[i].tobytes(),
                    _IMPORTANCE_FIELDS[kind],
                    _PINNED_FALSE,
                    _TIMES.pack(8, int(data.created_us[i]), 8, int(data.updated_us[i])),
                    _TAIL,
                )
            )
        )
    return rows


# --- Databases ---


@dataclass
class Population:
    """The bench users of one database: the regular ones, the small and the big one."""

    regular: list[int]
    small: int
    big: int

    @property
    def rows(self) -> int:
        return len(self.regular) * PER_USER + SMALL_USER + BIG_USER


def regular_email(index: int) -> str:
    return f"user{index:05d}@{DOMAIN}"


def database_name(users: int) -> str:
    return f"recall_{users}u"


def psycopg_connect(url: str, *, vectors: bool = False) -> Any:
    """An autocommit connection; with `vectors`, pgvector values load as numpy arrays."""
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=True)
    if vectors:
        register_vector(conn)
    return conn


def data_version() -> str:
    """Written on the seeded database: a change of the data model makes a rerun reseed."""
    return f"bench/recall.py data: dim {DIM}, seed {SEED}, topics {TOPICS}/{TOPICS_PER_USER}"


def find_population(conn: Any, users: int) -> Population | None:
    """The seeded population, or None when the database does not hold exactly it."""
    comment = common.scalar(
        conn,
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
        "WHERE datname = current_database()",
    )
    if comment != data_version():
        return None
    rows = conn.execute(
        "SELECT u.email, u.id, count(m.id) FROM accounts_user u "
        "LEFT JOIN memory_memory m ON m.user_id = u.id GROUP BY u.id"
    ).fetchall()
    by_email = {email: (user_id, count) for email, user_id, count in rows}
    expected = {regular_email(i): PER_USER for i in range(users)}
    expected[f"small@{DOMAIN}"] = SMALL_USER
    expected[f"big@{DOMAIN}"] = BIG_USER
    if len(by_email) != len(expected):
        return None
    if any(by_email.get(email, (0, -1))[1] != count for email, count in expected.items()):
        return None
    return Population(
        regular=[by_email[regular_email(i)][0] for i in range(users)],
        small=by_email[f"small@{DOMAIN}"][0],
        big=by_email[f"big@{DOMAIN}"][0],
    )


def recreate_database(bench_db: common.BenchDatabase, name: str) -> None:
    with psycopg_connect(bench_db.admin_url("postgres")) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def ensure_database(bench_db: common.BenchDatabase, name: str) -> None:
    with psycopg_connect(bench_db.admin_url("postgres")) as admin:
        exists = common.scalar(admin, "SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def seed(conn: Any, world: World, users: int) -> Population:
    """Create the users (bulk) and COPY their memories in, interleaved as if over time."""
    from accounts.models import User

    people = [User(email=regular_email(i)) for i in range(users)]
    people += [User(email=f"small@{DOMAIN}"), User(email=f"big@{DOMAIN}")]
    for person in people:
        person.set_unusable_password()
    created = User.objects.bulk_create(people, batch_size=1000)
    ids = [int(person.pk) for person in created]
    population = Population(regular=ids[:users], small=ids[users], big=ids[users + 1])
    now_us = int((datetime.now(UTC) - PG_EPOCH).total_seconds() * 1_000_000)
    rng = np.random.default_rng([SEED, 1])
    # (key, user id, count): keys make each user's data deterministic.
    plan = [(i, uid, PER_USER) for i, uid in enumerate(population.regular)]
    plan += [(10**6, population.small, SMALL_USER), (10**6 + 1, population.big, BIG_USER)]
    from psycopg.copy import QueuedLibpqWriter

    conn.execute("SET synchronous_commit = off")
    is_superuser = common.scalar(conn, "SHOW is_superuser") == "on"
    with conn.transaction():
        if is_superuser:
            # The users exist: skip the per-row foreign-key triggers while loading.
            conn.execute("SET LOCAL session_replication_role = replica")
        cursor = conn.cursor()
        sql = f"COPY memory_memory ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(sql, writer=QueuedLibpqWriter(cursor)) as copy:
            copy.write(COPY_HEADER)
            for start in range(0, len(plan), COPY_USERS_PER_BATCH):
                rows: list[bytes] = []
                for key, user_id, count in plan[start : start + COPY_USERS_PER_BATCH]:
                    rows += copy_rows(user_id, user_data(world, key, count, now_us))
                order = rng.permutation(len(rows))  # interleave the batch's users
                copy.write(b"".join(rows[i] for i in order))
            copy.write(COPY_TRAILER)
        # The load's commit must reach the disk before the VACUUM below: a row whose
        # asynchronous commit is not yet flushed cannot get its hint bits, so VACUUM leaves
        # its page not all-visible, and every "index-only" scan (recall's and the floor's)
        # would then read each of the person's table rows too (1,000 heap fetches a query,
        # 1,181 buffers instead of 259) until autovacuum comes by.
        conn.execute("SET LOCAL synchronous_commit = on")
    conn.execute("VACUUM (ANALYZE) memory_memory")
    conn.execute("ANALYZE accounts_user")
    name = common.scalar(conn, "SELECT current_database()")
    conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{data_version()}'")
    return population


def prepare_database(
    bench_db: common.BenchDatabase, world: World, users: int, reseed: bool
) -> tuple[Population, float | None]:
    """The seeded database of `users` regular users; seeding time (s) if it seeded now."""
    name = database_name(users)
    url = bench_db.admin_url(name)
    if reseed:
        recreate_database(bench_db, name)
    else:
        ensure_database(bench_db, name)
    with common.django_database(name):
        migrate()
    with psycopg_connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {HNSW_TABLE}")  # left by an interrupted run
        population = find_population(conn, users)
    if population is not None:
        return population, None
    started = time.perf_counter()
    recreate_database(bench_db, name)
    with common.django_database(name):
        migrate()
        with psycopg_connect(url) as conn:
            population = seed(conn, world, users)
    return population, time.perf_counter() - started


# --- Queries and ground truth ---


@dataclass
class UserRows:
    ids: npt.NDArray[np.int64]
    contents: list[str]
    vectors: Vectors


@dataclass
class Query:
    user_id: int
    text: str
    vector: list[float]  # float32 values, as a caller would pass to recall()

    @property
    def literal(self) -> str:
        # Exactly what recall() sends: "%.7g" of each component.
        return "[" + ",".join(f"{x:.7g}" for x in self.vector) + "]"

    @property
    def sent(self) -> npt.NDArray[np.float64]:
        return np.array(self.literal[1:-1].split(","), dtype=np.float64)


def fetch_rows(conn: Any, user_ids: list[int]) -> dict[int, UserRows]:
    """Each user's live memories (id, content, embedding), straight from the table."""
    grouped: dict[int, tuple[list[int], list[str], list[Any]]] = {}
    with conn.cursor(binary=True) as cursor:
        cursor.execute(
            "SELECT user_id, id, content, embedding FROM memory_memory "
            "WHERE user_id = ANY(%s) AND (expires_at IS NULL OR expires_at > now())",
            [user_ids],
        )
        for user_id, memory_id, content, embedding in cursor:
            ids, contents, vectors = grouped.setdefault(user_id, ([], [], []))
            ids.append(memory_id)
            contents.append(content)
            vectors.append(embedding.to_numpy() if hasattr(embedding, "to_numpy") else embedding)
    return {
        user_id: UserRows(
            np.array(ids, dtype=np.int64), contents, np.stack(vectors).astype(np.float32)
        )
        for user_id, (ids, contents, vectors) in grouped.items()
    }


_TEMPLATE_WORDS = frozenset(
    ["my", "is", "in", "i", "prefer", "over", "the", "with", "and", "am", "working", "on", "for"]
)


def make_query(user_id: int, rows: UserRows, rng: np.random.Generator) -> Query:
    """A message about something the person said: near one memory, worded with its words."""
    j = int(rng.integers(len(rows.ids)))
    noise = rng.standard_normal(DIM).astype(np.float32)
    noise /= np.linalg.norm(noise)
    vector = QUERY_WEIGHT * rows.vectors[j] + math.sqrt(1 - QUERY_WEIGHT**2) * noise
    vector /= np.linalg.norm(vector)
    words = [w for w in rows.contents[j].split() if w.lower() not in _TEMPLATE_WORDS]
    return Query(user_id, f"what about {words[0]} {words[1]}?", vector.astype(np.float32).tolist())


def exact_top(rows: UserRows, query: Query, k: int = 5) -> set[int]:
    """Brute-force cosine top k over the user's rows (float64), ties by id like recall."""
    q = query.sent
    vectors = rows.vectors.astype(np.float64)
    similarity = (vectors @ q) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    order = np.lexsort((rows.ids, -similarity))[:k]
    return {int(i) for i in rows.ids[order]}


def recall_parameters(query: Query) -> dict[str, Any]:
    """The parameters recall() gives RECALL_SQL for this query (vector given)."""
    from accounts.models import User
    from memory import services

    return services.recall_parameters(
        user=User(pk=query.user_id),
        query=query.text,
        vector=query.vector,
        limit=settings_limit(),
    )


def settings_limit() -> int:
    from django.conf import settings

    return int(settings.MEMORY_RECALL_LIMIT)


def recall_vector_top(query: Query, k: int = 5) -> list[int]:
    """The first k of the vector ranking inside recall's own statement (its CTEs, with the
    parameters recall() builds), as recall ranks them before fusing."""
    from django.db import connection

    from memory import services

    with connection.cursor() as cursor:
        cursor.execute(
            services.RECALL_CTES + f"SELECT id FROM vector_top WHERE vector_rank <= {int(k)} "
            "ORDER BY vector_rank",
            recall_parameters(query),
        )
        return [row[0] for row in cursor.fetchall()]


FLOOR_SQL = (
    "SELECT id FROM memory_memory WHERE user_id = %s ORDER BY embedding <=> %s::vector LIMIT %s"
)


def time_floor(queries: list[Query]) -> list[float]:
    """The exact-scan floor: one bare ORDER BY <=> LIMIT k over the same person's rows."""
    from django.db import connection

    times = []
    for query in queries:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(FLOOR_SQL, [query.user_id, query.literal, settings_limit()])
            cursor.fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return times


# --- Index statistics ---


@dataclass
class ScanCounts:
    index_scans: dict[str, int] = field(default_factory=dict)
    seq_scans: int = 0


def flush_django_stats() -> None:
    """Make the Django connection's backend publish its pending statistics now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def flush_stats(conn: Any) -> None:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")


def scan_counts(stats: Any, table: str) -> ScanCounts:
    stats.execute("SELECT pg_stat_clear_snapshot()")
    rows = stats.execute(
        "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relname = %s", [table]
    ).fetchall()
    seq = common.scalar(
        stats, "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = %s", [table]
    )
    return ScanCounts({name: int(count) for name, count in rows}, int(seq or 0))


def scan_delta(before: ScanCounts, after: ScanCounts) -> ScanCounts:
    return ScanCounts(
        {
            name: count - before.index_scans.get(name, 0)
            for name, count in after.index_scans.items()
            if count - before.index_scans.get(name, 0)
        },
        after.seq_scans - before.seq_scans,
    )


def describe_scans(delta: ScanCounts) -> str:
    parts = [f"{name} {count}" for name, count in sorted(delta.index_scans.items())]
    parts.append(f"seq {delta.seq_scans}")
    return ", ".join(parts)


def plan_scans(query: Query) -> str:
    """The memory_memory scan nodes of EXPLAIN's plan for recall's statement (for the record;
    the scan counts come from the statistics)."""
    import json

    from django.db import connection

    from memory import services

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'memory_memory'")
        names = {"memory_memory"} | {name for (name,) in cursor.fetchall()}
        cursor.execute("EXPLAIN (FORMAT JSON) " + services.RECALL_SQL, recall_parameters(query))
        row = cursor.fetchone()
    plan = row[0] if row else []
    plan = plan if isinstance(plan, list) else json.loads(plan)
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        name = node.get("Index Name") or node.get("Relation Name") or ""
        if "Scan" in node["Node Type"] and name in names:
            found.append(f"{node['Node Type']} {name}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return "; ".join(dict.fromkeys(found))


# --- Latency ---


@dataclass
class LatencyRow:
    database: str
    who: str
    memories: str
    mode: str
    ms: list[float]
    scans: str
    plan: str = ""
    floor: list[float] = field(default_factory=list)

    def ratio(self) -> str:
        """p50 and p95 over the floor's p50 and p95."""
        if not self.floor:
            return ""
        p50 = common.percentile(self.ms, 0.5) / common.percentile(self.floor, 0.5)
        p95 = common.percentile(self.ms, 0.95) / common.percentile(self.floor, 0.95)
        return f"{p50:5.2f}x {p95:5.2f}x"


def time_recall(queries: list[Query], *, embed: bool) -> list[float]:
    from accounts.models import User
    from memory import services

    times = []
    for query in queries:
        user = User(pk=query.user_id)
        started = time.perf_counter()
        services.recall(user=user, query=query.text, embedding=None if embed else query.vector)
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure_latency(
    label: str, url: str, population: Population, rng: np.random.Generator
) -> list[LatencyRow]:
    """recall() latency for the small, a random regular and the big user, both modes."""
    with psycopg_connect(url, vectors=True) as stats:
        regular = [int(u) for u in rng.choice(population.regular, QUERIES + WARMUP)]
        rows = fetch_rows(stats, sorted({*regular, population.small, population.big}))
        groups = [
            ("small", f"{SMALL_USER:,}", [population.small] * (QUERIES + WARMUP)),
            ("random", f"{PER_USER:,} each", regular),
            ("big", f"{BIG_USER:,}", [population.big] * (QUERIES + WARMUP)),
        ]
        result = []
        for who, memories, user_ids in groups:
            queries = [make_query(uid, rows[uid], rng) for uid in user_ids]
            explain = plan_scans(queries[0])
            # The floor and recall alternate query by query, so machine load hits both alike.
            time_floor(queries[:WARMUP])
            time_recall(queries[:WARMUP], embed=False)
            flush_django_stats()
            before = scan_counts(stats, "memory_memory")
            floor: list[float] = []
            given: list[float] = []
            for query in queries[WARMUP:]:
                floor += time_floor([query])
                given += time_recall([query], embed=False)
            flush_django_stats()
            delta = scan_delta(before, scan_counts(stats, "memory_memory"))
            result.append(
                LatencyRow(
                    label, who, memories, "exact-scan floor", floor, "(interleaved)", explain
                )
            )
            result.append(
                LatencyRow(
                    label, who, memories, "vector given", given, describe_scans(delta), explain,
                    floor,
                )
            )  # fmt: skip
            time_recall(queries[:WARMUP], embed=True)
            embedded = time_recall(queries[WARMUP:], embed=True)
            result.append(
                LatencyRow(label, who, memories, "embeds the text", embedded, "", explain, floor)
            )
    return result


# --- Exact scan and HNSW: overlap and latency ---


@dataclass
class AnnRow:
    method: str
    table_rows: int
    overlap: float
    returned: float
    empty: int
    ms: list[float]
    scans: str


def run_queries(
    queries: list[Query], truth: list[set[int]], run: Callable[[Query], list[int]]
) -> tuple[float, float, int, list[float]]:
    """Run `run` on each query (after WARMUP of them): overlap@5, mean returned, empties, ms."""
    for query in queries[:WARMUP]:
        run(query)
    overlaps, returned, empty, times = [], [], 0, []
    for query, exact in zip(queries[WARMUP:], truth[WARMUP:], strict=True):
        started = time.perf_counter()
        found = run(query)
        times.append((time.perf_counter() - started) * 1000)
        overlaps.append(len(set(found) & exact) / 5)
        returned.append(len(found))
        empty += not found
    return float(np.mean(overlaps)), float(np.mean(returned)), empty, times


def exact_rows(
    url: str, population: Population, rng: np.random.Generator
) -> tuple[list[AnnRow], list[Query], dict[int, UserRows]]:
    """(a): recall's vector top 5 and a plain exact top-5 query versus numpy, at full size."""
    user_ids = [int(u) for u in rng.choice(population.regular, QUERIES + WARMUP)]
    result = []
    with psycopg_connect(url, vectors=True) as conn, psycopg_connect(url) as stats:
        rows = fetch_rows(conn, sorted(set(user_ids)))
        queries = [make_query(uid, rows[uid], rng) for uid in user_ids]
        truth = [exact_top(rows[q.user_id], q) for q in queries]

        flush_django_stats()
        before = scan_counts(stats, "memory_memory")
        overlap, returned, empty, ms = run_queries(queries, truth, recall_vector_top)
        flush_django_stats()
        delta = scan_delta(before, scan_counts(stats, "memory_memory"))
        result.append(
            AnnRow(
                "recall(): its SQL's rows with vector_rank <= 5 (exact scan)",
                population.rows, overlap, returned, empty, ms, describe_scans(delta),
            )
        )  # fmt: skip

        def exact_query(query: Query) -> list[int]:
            return [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM memory_memory WHERE user_id = %s "
                    "AND (expires_at IS NULL OR expires_at > now()) "
                    "ORDER BY embedding <=> %s::vector, id LIMIT 5",
                    [query.user_id, query.literal],
                )
            ]

        before = scan_counts(stats, "memory_memory")
        overlap, returned, empty, ms = run_queries(queries, truth, exact_query)
        flush_stats(conn)
        delta = scan_delta(before, scan_counts(stats, "memory_memory"))
        result.append(
            AnnRow(
                "plain exact top-5 query (user index, then sort)",
                population.rows, overlap, returned, empty, ms, describe_scans(delta),
            )
        )  # fmt: skip
    return result, queries, rows


@dataclass
class HnswBuild:
    rows: int
    users: int
    seconds: float
    index_mb: float
    finished: bool = True


def build_hnsw(
    conn: Any, user_ids: list[int], limit_s: float | None = None, deadline: float | None = None
) -> HnswBuild:
    """A copy of these users' rows with a global HNSW index on the embedding.

    CREATE INDEX is cancelled after `limit_s` or at `deadline` (perf_counter), whichever
    comes first; `finished` is then False.
    """
    import psycopg

    conn.execute(f"DROP TABLE IF EXISTS {HNSW_TABLE}")
    conn.execute(
        f"CREATE TABLE {HNSW_TABLE} AS SELECT id, user_id, embedding FROM memory_memory "
        "WHERE user_id = ANY(%s) ORDER BY id",
        [user_ids],
    )
    conn.execute(f"VACUUM (ANALYZE) {HNSW_TABLE}")
    rows = int(common.scalar(conn, f"SELECT count(*) FROM {HNSW_TABLE}"))
    conn.execute("SET maintenance_work_mem = '4GB'")
    conn.execute(f"SET max_parallel_maintenance_workers = {max(0, (os.cpu_count() or 1) - 1)}")
    started = time.perf_counter()
    timeout_s = min(
        limit_s if limit_s is not None else math.inf,
        deadline - started if deadline is not None else math.inf,
    )
    if timeout_s < 60:
        return HnswBuild(rows, len(user_ids), 0.0, 0.0, False)
    if timeout_s < math.inf:
        conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
    try:
        conn.execute(
            f"CREATE INDEX {HNSW_INDEX} ON {HNSW_TABLE} USING hnsw (embedding vector_cosine_ops)"
        )
    except psycopg.errors.QueryCanceled:
        return HnswBuild(rows, len(user_ids), time.perf_counter() - started, 0.0, False)
    finally:
        conn.execute("RESET statement_timeout")
        conn.execute("RESET maintenance_work_mem")
        conn.execute("RESET max_parallel_maintenance_workers")
    seconds = time.perf_counter() - started
    conn.execute(f"ANALYZE {HNSW_TABLE}")
    size = common.scalar(conn, "SELECT pg_relation_size(%s)", [HNSW_INDEX])
    return HnswBuild(rows, len(user_ids), seconds, int(size) / 2**20)


def hnsw_rows(
    url: str,
    build: HnswBuild,
    queries: list[Query],
    truth: list[set[int]],
) -> list[AnnRow]:
    """(b): the global HNSW index filtered by user, iterative scan off / relaxed / strict."""
    result = []
    with psycopg_connect(url) as conn, psycopg_connect(url) as stats:
        conn.execute("SELECT '[1]'::vector")  # loads pgvector, which defines its settings
        ef_search = common.scalar(conn, "SHOW hnsw.ef_search")
        max_tuples = common.scalar(conn, "SHOW hnsw.max_scan_tuples")
        for mode in ("off", "relaxed_order", "strict_order"):
            conn.execute(f"SET hnsw.iterative_scan = {mode}")

            def ann(query: Query) -> list[int]:
                return [
                    row[0]
                    for row in conn.execute(
                        f"SELECT id FROM {HNSW_TABLE} WHERE user_id = %s "
                        "ORDER BY embedding <=> %s::vector LIMIT 5",
                        [query.user_id, query.literal],
                    )
                ]

            flush_stats(conn)
            before = scan_counts(stats, HNSW_TABLE)
            overlap, returned, empty, ms = run_queries(queries, truth, ann)
            flush_stats(conn)
            delta = scan_delta(before, scan_counts(stats, HNSW_TABLE))
            result.append(
                AnnRow(
                    f"HNSW global, {build.users:,} users, iterative_scan={mode}",
                    build.rows, overlap, returned, empty, ms, describe_scans(delta),
                )
            )  # fmt: skip
        conn.execute("RESET hnsw.iterative_scan")
    print(
        f"   (HNSW on {build.rows:,} rows: built in {build.seconds:.0f} s, index "
        f"{build.index_mb:.0f} MiB; hnsw.ef_search={ef_search}, "
        f"hnsw.max_scan_tuples={max_tuples}; {len(queries) - WARMUP} queries after {WARMUP} "
        "warm-up per mode; psycopg prepares a statement after 5 runs)"
    )
    return result


def hnsw_experiment(
    url: str,
    population: Population,
    rng: np.random.Generator,
    users: int,
    label: str,
    limit_s: float | None = None,
    deadline: float | None = None,
) -> tuple[list[AnnRow], HnswBuild]:
    """Build the copy for `users` regular users, query it for random users among them."""
    chosen = population.regular[:users]
    print(f"   {label}")
    with psycopg_connect(url, vectors=True) as conn:
        build = build_hnsw(conn, chosen, limit_s, deadline)
        if not build.finished:
            return [], build
        user_ids = [int(u) for u in rng.choice(chosen, QUERIES + WARMUP)]
        rows = fetch_rows(conn, sorted(set(user_ids)))
    queries = [make_query(uid, rows[uid], rng) for uid in user_ids]
    truth = [exact_top(rows[q.user_id], q) for q in queries]
    return hnsw_rows(url, build, queries, truth), build


def drop_hnsw(url: str) -> None:
    with psycopg_connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {HNSW_TABLE}")


# --- Report ---


def print_latency(rows: list[LatencyRow]) -> None:
    print()
    print(
        f"1. recall() latency, ms (wall time of memory.services.recall in this process; "
        f"{QUERIES} queries after {WARMUP} warm-up per row)"
    )
    print(
        f"   {'database':<18}{'user':<8}{'memories':>12}  {'query':<17}"
        f"{'p50':>9}{'p95':>9}{'p99':>9}  {'/ floor p50, p95':>16}   scans during the "
        f"{QUERIES} (pg_stat_user_*)"
    )
    for row in rows:
        print(
            f"   {row.database:<18}{row.who:<8}{row.memories:>12}  {row.mode:<17}"
            f"{common.pcts(row.ms)}  {row.ratio():>16}   {row.scans}"
        )
    print(
        "   floor = one bare `SELECT id FROM memory_memory WHERE user_id = %s ORDER BY "
        "embedding <=> q LIMIT k` (k = MEMORY_RECALL_LIMIT), alternating with recall query by "
        "query"
    )
    plans = dict.fromkeys((row.database, row.who, row.plan) for row in rows)
    print("   EXPLAIN of RECALL_SQL (memory part) for one query of each row:")
    for database, who, plan in plans:
        print(f"     {database} {who}: {plan}")


def print_ann(rows: list[AnnRow]) -> None:
    print(
        f"   {'method':<60}{'rows':>11}{'overlap@5':>10}{'got/5':>7}{'empty':>6}"
        f"{'p50 ms':>9}{'p95 ms':>9}   scans (pg_stat_user_*)"
    )
    for row in rows:
        print(
            f"   {row.method:<60}{row.table_rows:>11,}{row.overlap:>10.3f}{row.returned:>7.2f}"
            f"{row.empty:>6}{common.pcts(row.ms, (0.5, 0.95))}   {row.scans}"
        )


def table_sizes(url: str) -> str:
    with psycopg_connect(url) as conn:
        total = common.scalar(conn, "SELECT pg_total_relation_size('memory_memory')")
        heap = common.scalar(conn, "SELECT pg_relation_size('memory_memory')")
        index = common.scalar(
            conn,
            "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = 'memory_memory'::regclass AND a.attname = 'user_id'",
        )
    mib = 2**20
    return (
        f"memory_memory {heap / mib:,.0f} MiB heap, {total / mib:,.0f} MiB with TOAST and "
        f"indexes; per-user index {index / mib:,.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reseed", action="store_true", help="drop and seed both databases")
    parser.add_argument(
        "--users",
        type=int,
        default=100,
        help="regular users in the large database (100: 110,010 rows; 1000: 1,010,010)",
    )
    parser.add_argument(
        "--hnsw",
        choices=("none", "auto", "100k", "1m"),
        default="none",
        help="the global HNSW comparison: none, on 100 users only, on all users too, or "
        "decide by the 100k build time",
    )
    args = parser.parse_args()
    common.bootstrap()

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    bench_db = common.BenchDatabase("bench-recall")
    large_url = ""
    try:
        bench_db.start()
        import django

        django.setup()
        print(common.machine_line())
        print(f"{common.load_line()} at the start (timings below share the machine)")
        from django.conf import settings

        print(
            f"recall settings: MEMORY_RECALL_LIMIT={settings.MEMORY_RECALL_LIMIT}, "
            f"EMBEDDING_THREADS={settings.EMBEDDING_THREADS}, embeddings "
            + ("remote" if settings.EMBEDDING_BASE_URL else "local MiniLM int8 ONNX")
        )
        print(
            f"data: synthetic {DIM}-d unit vectors around {TOPICS} shared topics "
            f"({TOPICS_PER_USER} per user, cosine to topic ~{TOPIC_WEIGHT}); queries = "
            f"{QUERY_WEIGHT} x one of the user's memories + noise, text 'what about <two of "
            "its words>?'"
        )
        world = World.make()
        rng = np.random.default_rng([SEED, 2])

        small_users, large_users = SMALL_DB_USERS, args.users
        small_pop, small_seed_s = prepare_database(bench_db, world, small_users, args.reseed)
        small_url = bench_db.admin_url(database_name(small_users))
        large_pop, large_seed_s = prepare_database(bench_db, world, large_users, args.reseed)
        large_url = bench_db.admin_url(database_name(large_users))
        with psycopg_connect(large_url) as conn:
            print(common.postgres_line(conn) + f"; PostgreSQL {bench_db.description}")
        for pop, seconds, url in (
            (small_pop, small_seed_s, small_url),
            (large_pop, large_seed_s, large_url),
        ):
            how = f"seeded now in {seconds:.1f} s" if seconds else "kept from an earlier run"
            print(
                f"database {database_name(len(pop.regular))}: {len(pop.regular):,} users "
                f"x {PER_USER:,} + {SMALL_USER} + {BIG_USER:,} = {pop.rows:,} memories, {how}; "
                f"{table_sizes(url)}"
            )

        latency: list[LatencyRow] = []
        with common.django_database(database_name(small_users)):
            latency += measure_latency(f"{small_pop.rows:,} rows", small_url, small_pop, rng)
        with common.django_database(database_name(large_users)):
            latency += measure_latency(f"{large_pop.rows:,} rows", large_url, large_pop, rng)
            print_latency(latency)
            print(f"   {common.load_line()} at the end of section 1")
            print()
            print(
                f"2. Exact vs ANN: overlap of the top 5 with a numpy brute-force top 5 over the "
                f"same user's rows; {QUERIES} queries, random users with {PER_USER:,} memories"
            )
            print(f"   (a) exact, on the app's table ({large_pop.rows:,} rows)")
            exact, _, _ = exact_rows(large_url, large_pop, rng)
            print_ann(exact)
            print(f"   {common.load_line()}")

        if args.hnsw == "none":
            raise StopIteration  # the HNSW comparison was not asked for
        sample = min(HNSW_SAMPLE_USERS, len(large_pop.regular))
        ann, build = hnsw_experiment(
            large_url,
            large_pop,
            rng,
            sample,
            f"(b) global HNSW index on a copy of {sample} users' rows",
        )
        print_ann(ann)
        print(f"   {common.load_line()}")
        drop_hnsw(large_url)
        full = len(large_pop.regular)
        projected = build.seconds * (full / sample) * 1.2 if sample < full else 0.0
        deadline = started + BUDGET_S - 150  # leave time for the queries and cleanup
        if sample < full and (
            args.hnsw == "1m" or (args.hnsw == "auto" and projected <= 2 * HNSW_1M_LIMIT_S)
        ):
            bounded = args.hnsw == "auto"
            ann, full_build = hnsw_experiment(
                large_url,
                large_pop,
                rng,
                full,
                f"(b) the same on a copy of all {full:,} regular users' rows (the 100k build "
                f"projects ~{projected / 60:.0f} min"
                + (
                    f"; CREATE INDEX is cancelled after {HNSW_1M_LIMIT_S / 60:.0f} min or at "
                    f"{BUDGET_S / 60:.0f} min of run time)"
                    if bounded
                    else ")"
                ),
                HNSW_1M_LIMIT_S if bounded else None,
                deadline if bounded else None,
            )
            if full_build.finished:
                print_ann(ann)
            else:
                why = (
                    f"CREATE INDEX did not finish in {full_build.seconds / 60:.1f} min on this "
                    "machine"
                    if full_build.seconds
                    else "too little run time was left to build the index"
                )
                print(
                    f"   not measured at {full_build.rows:,} rows: {why}, so the HNSW numbers "
                    f"are the {build.rows:,}-row ones above"
                )
            print(f"   {common.load_line()}")
        elif sample < full:
            print(
                f"   (b) on all {full:,} users' rows: not built; the {build.rows:,}-row build "
                f"took {build.seconds:.0f} s, which projects to ~{projected / 60:.0f} min for "
                f"{full * PER_USER:,} rows (limit {HNSW_1M_LIMIT_S / 60:.0f} min, or run "
                "with --hnsw=1m)"
            )
    except StopIteration:
        print("   (b) global HNSW: not run (--hnsw=none; see --hnsw=100k)")
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        if large_url:
            try:
                drop_hnsw(large_url)
            except Exception as exc:
                print(f"(could not drop {HNSW_TABLE}: {exc})")
        try:
            common.close_django_connections()
        except Exception as exc:
            print(f"(could not close Django's connections: {exc})")
        bench_db.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
