"""Benchmark of account erasure: one person with 100k memories and 50k messages is erased
while other people keep chatting.

Run: `.venv/bin/python bench/erase.py` from the repository root. It needs no running stack: it
starts an embedded PostgreSQL (unless DATABASE_URL is set) and a throw-away Redis (unless
REDIS_URL is set), seeds the person server-side (INSERT ... SELECT over generate_series, random
384-d vectors), and starts WRITERS processes that each keep writing for their own person what
a chat turn writes (`chat.services.send_message`: a message and its pending reply) and what
extraction writes (`memory.services.remember`: a memory and its event). It then measures

1. the erasure (`accounts.services.erase_account`, as the erase page calls it): wall time,
   the SQL it ran grouped by statement and table, rows deleted per table, peak memory;
2. the other people's write latency before, during and after the erasure (do they block?).

Prints numbers; asserts nothing about time. Everything it started is stopped at the end, and
the people it created are deleted.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import platform
import random
import re
import resource
import secrets
import signal
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

MEMORIES = 100_000
MESSAGES = 50_000  # half the person's, half the assistant's replies
CONVERSATIONS = 500
SUMMARIES = CONVERSATIONS
MEMORIES_USED_PER_REPLY = 2  # links from each reply to the memories it used
OTHER_SESSIONS = 10_000  # other people's sessions: erasure scans the session table
WRITERS = 3  # processes, each writing for its own person
WRITER_PAUSE = 0.05  # seconds between two writes of one writer
BASELINE_S = 6.0  # writes measured before the erasure
AFTER_S = 4.0  # and after it
VECTORS = 1000  # distinct random vectors the seeded rows share
EMAIL_DOMAIN = "erase-bench.invalid"


def bootstrap() -> None:
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("MNEMO_PRODUCTION", None)  # no HTTPS redirect, no production checks
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


# --- Services ---


class Bench:
    """What the benchmark starts, so that `stop()` can take exactly that down again."""

    def __init__(self) -> None:
        from config import stack

        self.root = stack.data_dir() / "bench"
        self.postgres: Any = None
        self.redis: Any = None
        self.django_ready = False
        self.writers: list[Any] = []
        self.services: dict[str, str] = {}
        self.run_id = secrets.token_hex(4)

    def start_services(self) -> None:
        from config import stack

        self.root.mkdir(parents=True, exist_ok=True)
        if os.environ.get("DATABASE_URL"):
            self.services["PostgreSQL"] = "external (DATABASE_URL)"
        else:
            self.postgres = stack.EmbeddedPostgres(self.root / "pg")
            os.environ["DATABASE_URL"] = self.postgres.start()
            self.services["PostgreSQL"] = "embedded, " + (
                "started here" if self.postgres.started_here else "already running"
            )
        if os.environ.get("REDIS_URL"):
            self.services["Redis"] = "external (REDIS_URL)"
        else:
            self.redis = stack.EmbeddedRedis(self.root / "redis-erase", persistent=False)
            os.environ["REDIS_URL"] = self.redis.start()
            self.services["Redis"] = "embedded, not persistent"
        os.environ.update(
            {
                "LLM_BASE_URL": "http://127.0.0.1:9/v1",  # nothing here calls a model
                "CHAT_RATE_LIMIT_PER_MINUTE": "0",
                "CHAT_DAILY_TOKEN_BUDGET": "0",
            }
        )

    def setup_django(self) -> None:
        import django
        from django.core.management import call_command

        django.setup()
        self.django_ready = True
        call_command("migrate", interactive=False, verbosity=0)
        self.delete_bench_data()  # leftovers of an interrupted run

    def delete_bench_data(self) -> None:
        from django.contrib.sessions.models import Session
        from django.db import connection

        from accounts.models import User

        User.objects.filter(email__endswith=f"@{EMAIL_DOMAIN}").delete()
        Session.objects.filter(session_key__startswith="erasebench").delete()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {VECTOR_TABLE}")

    def stop(self) -> None:
        for process in self.writers:
            if process.is_alive():
                process.terminate()
                process.join(10)
        if self.django_ready:
            from django.db import connections

            try:
                self.delete_bench_data()
            except Exception as exc:
                print(f"(could not delete the benchmark's data: {exc})")
            for connection in connections.all():
                connection.close()
                close_pool = getattr(connection, "close_pool", None)
                if close_pool is not None:
                    close_pool()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.postgres.stop(only_if_started_here=True)


# --- Seeding (server-side, so that 150k rows take seconds, not minutes) ---


def insert_select(model: Any, source: str, values: dict[str, str]) -> int:
    """INSERT INTO <model> SELECT ... FROM <source>: `values` gives SQL per field; every other
    column gets its field's default, so the seed follows the models as they change."""
    from django.db import connection

    columns, expressions, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or getattr(field, "generated", False):
            continue
        columns.append(f'"{field.column}"')
        if field.attname in values:
            expressions.append(values[field.attname])
        else:
            expressions.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    sql = (
        f'INSERT INTO "{model._meta.db_table}" ({", ".join(columns)}) '
        f"SELECT {', '.join(expressions)} FROM {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        count = int(cursor.rowcount)
        # Fresh statistics, so that the next seeding join is planned as a hash join.
        cursor.execute(f'ANALYZE "{model._meta.db_table}"')
    return count


VECTOR_TABLE = "erase_bench_vectors"


def vector_table(dims: int) -> str:
    """A table (i, e) of VECTORS random vectors, made once: seeded rows join it by i."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {VECTOR_TABLE} AS SELECT i, (SELECT array_agg("
            f"random()::real) FROM generate_series(1, {dims}) WHERE i >= 0)::vector AS e "
            f"FROM generate_series(0, {VECTORS - 1}) i"
        )
        cursor.execute(f"ANALYZE {VECTOR_TABLE}")
    return VECTOR_TABLE


def seed_person(user_id: int, *, memories: int, messages: int, conversations: int) -> None:
    """Conversations, messages, memories with events, reply-memory links, summaries, runs."""
    from django.conf import settings

    from chat.models import Conversation, Message
    from memory.models import ConversationSummary, ExtractionRun, Memory, MemoryEvent

    u = int(user_id)
    vectors = vector_table(settings.EMBEDDING_DIMENSIONS)
    per_conversation = max(1, messages // conversations)
    insert_select(
        Conversation,
        f"generate_series(1, {conversations}) g",
        {"user_id": str(u), "title": "'Seeded conversation ' || g"},
    )
    insert_select(
        Message,
        f"generate_series(1, {messages}) g, (SELECT array_agg(id ORDER BY id) AS ids FROM "
        f"chat_conversation WHERE user_id = {u}) c",
        {
            "user_id": str(u),
            "conversation_id": f"c.ids[1 + (g - 1) / {per_conversation}]",
            "role": "CASE WHEN mod(g, 2) = 1 THEN 'user' ELSE 'assistant' END",
            "content": "'Seeded message ' || g || ' about the garden, the bees and the "
            "train timetable, long enough to look like something a person would write.'",
            "status": "'complete'",
            "created_at": f"now() - interval '1 second' * ({messages} - g)",
            "updated_at": "now()",
        },
    )
    kinds = "(ARRAY['profile', 'preference', 'task', 'task'] || array_fill('fact'::text, '{6}'))"
    insert_select(
        Memory,
        f"generate_series(1, {memories}) g JOIN {vectors} v ON v.i = mod(g, {VECTORS})",
        {
            "user_id": str(u),
            "kind": f"{kinds}[1 + mod(g, 10)]",
            "content": "'I said seeded thing number ' || g || ' about my life and my work'",
            "embedding": "v.e",
            "importance": "random()",
            "created_at": "now()",
            "updated_at": "now()",
            "expires_at": "CASE WHEN mod(g, 10) < 2 THEN NULL ELSE now() + interval '365 days' END",
        },
    )
    insert_select(
        MemoryEvent,
        f"memory_memory m WHERE m.user_id = {u}",
        {
            "user_id": str(u),
            "memory_id": "m.id",
            "memory_ref": "m.id",
            "kind": "m.kind",
            "action": "'added'",
            "actor": "'extractor'",
            "new_content": "m.content",
            "created_at": "now()",
        },
    )
    link = Message.memories_used.through
    with_rank = "SELECT id, row_number() OVER (ORDER BY id) AS rn FROM {table} WHERE user_id = {u}"
    replies = with_rank.format(table="chat_message", u=u) + " AND role = 'assistant'"
    remembered = with_rank.format(table="memory_memory", u=u)
    for k in range(MEMORIES_USED_PER_REPLY):  # reply n used memories n, n + replies, ...
        insert_select(
            link,
            f"({replies}) a JOIN ({remembered}) m ON m.rn = a.rn + {k * (messages // 2)}",
            {"message_id": "a.id", "memory_id": "m.id"},
        )
    insert_select(
        ConversationSummary,
        f"chat_conversation c JOIN {vectors} v ON v.i = mod(c.id, {VECTORS}) WHERE c.user_id = {u}",
        {
            "user_id": str(u),
            "conversation_id": "c.id",
            "conversation_title": "c.title",
            "content": "'I talked about seeded things in ' || c.title",
            "embedding": "v.e",
            "last_message_id": "0",
            "created_at": "now()",
            "updated_at": "now()",
        },
    )
    insert_select(
        ExtractionRun,
        f"chat_message m WHERE m.user_id = {u} AND m.role = 'user'",
        {"user_id": str(u), "source_message_id": "m.id", "status": "'done'", "created_at": "now()"},
    )


def seed_sessions(victim_id: int, count: int) -> None:
    """Other people's sessions (erasure looks through them all for the person's)."""
    from datetime import timedelta

    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    expire = timezone.now() + timedelta(days=14)
    store = SessionStore()
    rows = [
        Session(
            session_key=f"erasebench{i:022d}",
            session_data=store.encode({"_auth_user_id": str(10**9 + i), "pad": "x" * 40}),
            expire_date=expire,
        )
        for i in range(count)
    ]
    rows += [
        Session(
            session_key=f"erasebenchvictim{i:016d}",
            session_data=store.encode({"_auth_user_id": str(victim_id)}),
            expire_date=expire,
        )
        for i in range(2)
    ]
    Session.objects.bulk_create(rows, batch_size=5000)


def rows_per_table(user_id: int) -> dict[str, int]:
    """The person's rows in every table with a user column, and their reply-memory links."""
    from django.db import connection

    from accounts.models import User
    from chat.models import Message

    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            relations = connection.introspection.get_relations(cursor, table)
            for column, (_, target) in relations.items():
                if target != User._meta.db_table:
                    continue
                cursor.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = %s', [user_id])
                n = int(cursor.fetchone()[0])
                if n:
                    counts[table] = counts.get(table, 0) + n
        link = Message.memories_used.through._meta.db_table
        cursor.execute(
            f'SELECT count(*) FROM "{link}" l JOIN chat_message m ON m.id = l.message_id '
            "WHERE m.user_id = %s",
            [user_id],
        )
        counts[link] = int(cursor.fetchone()[0])
    if User.objects.filter(pk=user_id).exists():
        counts[User._meta.db_table] = 1
    return counts


# --- Writers (separate processes: their latency is the database's, not this process's GIL) ---


def writer(
    index: int, user_id: int, conversation_id: int, ready: Any, stop: Any, results: Any
) -> None:
    bootstrap()
    import django

    django.setup()
    from accounts.models import User
    from chat import services as chat_services
    from memory import services as memory_services

    user = User.objects.get(pk=user_id)
    rng = random.Random(index)
    samples: list[tuple[float, float, str]] = []
    errors: dict[str, int] = defaultdict(int)
    dims = 384
    ready.put(index)
    n = 0
    while not stop.is_set():
        op = "message" if n % 2 == 0 else "memory"
        wall, started = time.time(), time.perf_counter()
        try:
            if op == "message":
                chat_services.send_message(
                    user=user, conversation_id=conversation_id, content=f"Writer {index} says {n}"
                )
            else:
                memory_services.remember(
                    user=user,
                    content=f"I noted thing {n} from writer {index}",
                    embedding=[rng.uniform(-1, 1) for _ in range(dims)],
                )
        except Exception as exc:
            errors[f"{op}: {type(exc).__name__}: {str(exc)[:80]}"] += 1
        samples.append((wall, (time.perf_counter() - started) * 1000, op))
        n += 1
        time.sleep(WRITER_PAUSE)
    results.put((index, samples, dict(errors)))


# --- Measuring the erasure's SQL ---


class SqlLog:
    """Times every statement the erasure runs, grouped by verb and table."""

    TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?([a-z_]+)"?', re.IGNORECASE)

    def __init__(self) -> None:
        self.groups: dict[str, list[float]] = defaultdict(list)

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            verb = sql.lstrip().split(None, 1)[0].upper()
            table = self.TABLE.search(sql)
            self.groups[f"{verb} {table.group(1) if table else ''}"].append(
                (time.perf_counter() - started) * 1000
            )


@contextlib.contextmanager
def logged_sql() -> Iterator[SqlLog]:
    from django.db import connection

    log = SqlLog()
    with connection.execute_wrapper(log):
        yield log


# --- Report ---


def window_stats(samples: list[tuple[float, float, str]], start: float, end: float) -> str:
    inside = [ms for wall, ms, _ in samples if start <= wall < end]
    if not inside:
        return f"{0:>6} {'-':>8} {'-':>8} {'-':>8} {'-':>9}"
    rate = len(inside) / max(end - start, 1e-9)
    return (
        f"{len(inside):>6} {statistics.median(inside):>8.1f} {percentile(inside, 0.95):>8.1f} "
        f"{max(inside):>8.1f} {rate:>9.1f}"
    )


def main() -> None:
    bootstrap()
    os.chdir(BASE_DIR)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench()
    started = time.perf_counter()
    try:
        bench.start_services()
        bench.setup_django()
        run(bench, started)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        bench.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def run(bench: Bench, started: float) -> None:
    import django
    from django.db import connection

    from accounts import services as account_services
    from accounts.models import User
    from chat import services as chat_services

    # The person to erase, and the people who keep chatting.
    victim = User.objects.create_user(email=f"victim-{bench.run_id}@{EMAIL_DOMAIN}")
    seeding = time.perf_counter()
    seed_person(victim.pk, memories=MEMORIES, messages=MESSAGES, conversations=CONVERSATIONS)
    seed_sessions(victim.pk, OTHER_SESSIONS)
    others = []
    for index in range(WRITERS):
        other = User.objects.create_user(email=f"writer{index}-{bench.run_id}@{EMAIL_DOMAIN}")
        seed_person(other.pk, memories=500, messages=200, conversations=2)
        conversation = chat_services.start_conversation(user=other)
        others.append((other, conversation))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    seed_s = time.perf_counter() - seeding
    before = rows_per_table(victim.pk)

    cores = os.cpu_count()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print(
        f"machine: {cores} cores, {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, Django {django.__version__}, PostgreSQL {pg_version}"
    )
    print("; ".join(f"{name}: {how}" for name, how in bench.services.items()))
    print(
        f"seeded in {seed_s:.1f} s: the person has {before.get('memory_memory', 0):,} memories, "
        f"{before.get('chat_message', 0):,} messages in {CONVERSATIONS} conversations; "
        f"{OTHER_SESSIONS:,} other sessions; {WRITERS} other people writing "
        f"(one write every {WRITER_PAUSE * 1000:.0f} ms each, alternating send_message / remember)"
    )

    # Writers: separate processes, started after seeding (spawned: no inherited connections).
    context = multiprocessing.get_context("spawn")
    ready, results, stop = context.Queue(), context.Queue(), context.Event()
    for index, (other, conversation) in enumerate(others):
        process = context.Process(
            target=writer, args=(index, other.pk, conversation.pk, ready, stop, results)
        )
        process.start()
        bench.writers.append(process)
    for _ in others:
        ready.get(timeout=120)
    time.sleep(1.0)  # warm-up: pools, first statements

    baseline_start = time.time()
    time.sleep(BASELINE_S)
    victim = User.objects.get(pk=victim.pk)
    scan = time.perf_counter()
    account_services._session_keys(victim.pk)  # the part of the erasure that reads sessions
    scan_s = time.perf_counter() - scan
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    erase_start = time.time()
    with logged_sql() as log:
        receipt = account_services.erase_account(user=victim, host="localhost")
    erase_end = time.time()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    time.sleep(AFTER_S)
    after_end = time.time()
    stop.set()

    samples: list[tuple[float, float, str]] = []
    errors: dict[str, int] = defaultdict(int)
    per_writer: dict[int, list[tuple[float, float, str]]] = {}
    for _ in others:
        index, writer_samples, writer_errors = results.get(timeout=60)
        per_writer[index] = writer_samples
        samples += writer_samples
        for error, count in writer_errors.items():
            errors[error] += count
    for process in bench.writers:
        process.join(10)

    erase_s = erase_end - erase_start
    print()
    print(f"1. Erasure: {erase_s:.2f} s wall (erase_account, one transaction + cache keys)")
    print(f"   peak RSS of this process grew by {(rss_peak - rss_before) / 1024:.0f} MiB")
    print(
        f"   of which finding the person's sessions among {OTHER_SESSIONS + 2:,} (decoding each, "
        f"measured separately just before): {scan_s * 1000:.0f} ms"
    )
    print(f"   {'rows deleted per table':<40}{'rows':>10}")
    for table, count in sorted(before.items(), key=lambda item: -item[1]):
        print(f"   {table:<40}{count:>10,}")
    print(f"   receipt counts: {receipt.counts}")
    left = {t: n for t, n in rows_per_table(victim.pk).items() if n}
    print(f"   rows of the person left afterwards: {left or 'none'}")
    statements = sum(len(v) for v in log.groups.values())
    total_ms = sum(sum(v) for v in log.groups.values())
    print(
        f"   SQL: {statements} statements, {total_ms / 1000:.2f} s in the database driver "
        f"({erase_s - total_ms / 1000:.2f} s in Python); the slowest groups:"
    )
    print(f"   {'statement':<44}{'count':>7}{'total s':>9}{'max ms':>9}")
    for group, times in sorted(log.groups.items(), key=lambda item: -sum(item[1]))[:10]:
        print(f"   {group[:44]:<44}{len(times):>7}{sum(times) / 1000:>9.2f}{max(times):>9.1f}")

    print()
    print(
        f"2. Other people's writes ({WRITERS} processes), ms per write "
        "(send_message: 2 messages + conversation; remember: memory + event)"
    )
    print(f"   {'window':<34}{'writes':>6} {'p50':>8} {'p95':>8} {'max':>8} {'writes/s':>9}")
    windows = [
        (f"before ({BASELINE_S:.0f} s)", baseline_start, erase_start),
        (f"during the erasure ({erase_s:.1f} s)", erase_start, erase_end),
        (f"after ({AFTER_S:.0f} s)", erase_end, after_end),
    ]
    for label, start, end in windows:
        print(f"   {label:<34}{window_stats(samples, start, end)}")
        for op in ("message", "memory"):
            subset = [s for s in samples if s[2] == op]
            print(f"     {op:<32}{window_stats(subset, start, end)}")
    # A write that started before the erasure ended and finished after it started overlaps it.
    overlapping = [
        ms for wall, ms, _ in samples if wall < erase_end and wall + ms / 1000 > erase_start
    ]
    if overlapping:
        print(
            f"   writes overlapping the erasure: {len(overlapping)}, "
            f"longest {max(overlapping):.1f} ms"
        )
    gaps = []
    for writer_samples in per_writer.values():
        ends = sorted(wall + ms / 1000 for wall, ms, _ in writer_samples)
        inside = [t for t in ends if erase_start - 1 <= t <= erase_end + 1]
        gaps += [b - a for a, b in itertools.pairwise(inside)]
    if gaps:
        print(
            f"   longest pause between two finished writes of one writer during the erasure: "
            f"{max(gaps) * 1000:.0f} ms (pause between writes is {WRITER_PAUSE * 1000:.0f} ms)"
        )
    print(f"   errors: {dict(errors) or 'none'}")
    print(f"\n(run took {time.perf_counter() - started:.0f} s so far; cleaning up)")


if __name__ == "__main__":
    main()
