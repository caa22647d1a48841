"""Benchmark of memory extraction per turn: memory.extraction.extract against the fake LLM.

Run: `.venv/bin/python bench/extract.py` from the repository root. It starts an embedded
PostgreSQL in `<data dir>/bench/pg` (unless DATABASE_URL is set) and the fake OpenAI-compatible
server of the tests, whose responder answers each extraction request with realistic facts for
the message (including an invented fact, a secret and an instruction the guards must drop)
and each decision request with a decision. It runs 200 turns across 5 people through
`extract` directly (no Celery), in conversation order, and reports per turn: total time,
split into LLM round trips, embedding, database and the rest; LLM calls; outcomes.

The fake answers at once (0 ms added latency): the LLM share is the HTTP + JSON + SDK cost
only; with a real model add its latency for each call. Embeddings run in-process (local
MiniLM) unless EMBEDDING_BASE_URL is set. Prints numbers; asserts nothing about time. Deletes
its users (and with them everything extraction wrote) and stops what it started.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

DOMAIN = "extract.bench.invalid"
TABLES = ("memory_", "accounts_", "chat_")  # table prefixes, to name statements by table
TURNS = 200
WARMUP_TURNS = 5

# --- The people and what they say ---

PEOPLE = [
    {
        "name": "Ana Souza", "role": "nurse", "city": "Porto", "city2": "Lisbon",
        "employer": "Santo Antonio Hospital", "relation": "daughter", "relative": "Mia",
        "pet": "a grey cat called Lua", "project": "a half marathon training plan",
        "hobby": "the cello", "food": "grilled sardines", "style": "short",
        "style2": "detailed", "language": "Portuguese",
    },
    {
        "name": "Ben Okafor", "role": "data engineer", "city": "Leeds", "city2": "Manchester",
        "employer": "Northwind Logistics", "relation": "brother", "relative": "Tunde",
        "pet": "a spaniel called Biscuit", "project": "a migration from Airflow to Dagster",
        "hobby": "climbing", "food": "jollof rice", "style": "bullet-point",
        "style2": "narrative", "language": "English",
    },
    {
        "name": "Chen Wei", "role": "architect", "city": "Singapore", "city2": "Taipei",
        "employer": "Lumen Studio", "relation": "mother", "relative": "Mei",
        "pet": "two goldfish", "project": "a library renovation in Jurong",
        "hobby": "calligraphy", "food": "laksa", "style": "concise",
        "style2": "step-by-step", "language": "Mandarin",
    },
    {
        "name": "Dara Novak", "role": "high school teacher", "city": "Ljubljana",
        "city2": "Zagreb", "employer": "Gimnazija Bezigrad", "relation": "son",
        "relative": "Luka", "pet": "a tortoise called Hugo", "project": "a chemistry club",
        "hobby": "trail running", "food": "mushroom soup", "style": "formal",
        "style2": "casual", "language": "Slovenian",
    },
    {
        "name": "Eli Fischer", "role": "product designer", "city": "Hamburg", "city2": "Berlin",
        "employer": "Fernweh Travel", "relation": "partner", "relative": "Noa",
        "pet": "a rescue dog called Pixel", "project": "a redesign of the booking app",
        "hobby": "sourdough baking", "food": "ramen", "style": "short",
        "style2": "thorough", "language": "German",
    },
]  # fmt: skip


@dataclass
class Turn:
    text: str
    facts: list[dict[str, str]]
    entities: list[dict[str, Any]] = field(default_factory=list)


def fact(kind: str, content: str) -> dict[str, str]:
    return {"kind": kind, "content": content}


def entity(name: str, type_: str, **attributes: str) -> dict[str, Any]:
    return {"name": name, "type": type_, "attributes": attributes}


def script(person: dict[str, str], count: int) -> list[Turn]:
    """`count` messages of one person, in the order of their conversations, with the facts a
    background model would propose for each (what the fake LLM answers)."""
    p = person
    secret = f"sk-live{secrets.token_hex(12)}"
    pet = p["pet"].split()
    pets = [entity(pet[-1], "pet", species=pet[-3])] if "called" in pet else []
    relative = entity(p["relative"], "person", relation=p["relation"])
    story = [
        Turn(
            f"Hi! I'm {p['name']}, I work as a {p['role']} in {p['city']}.",
            [
                fact("profile", f"My name is {p['name']}"),
                fact("profile", f"I work as a {p['role']}"),
                fact("profile", f"I live in {p['city']}"),
            ],
            [entity(p["city"], "place")],
        ),
        Turn(
            f"Please keep answers {p['style']}, I prefer {p['style']} answers.",
            [fact("preference", f"I prefer {p['style']} answers")],
        ),
        Turn("Can you suggest something quick for dinner tonight?", []),
        Turn(
            f"I work at {p['employer']} and I've been there for three years.",
            [fact("profile", f"I work at {p['employer']}")],
            [entity(p["employer"], "organization")],
        ),
        Turn(
            f"My {p['relation']} {p['relative']} just started learning to swim.",
            [fact("fact", f"My {p['relation']} {p['relative']} is learning to swim")],
            [relative],
        ),
        Turn(
            f"I have {p['pet']}, and he keeps me busy.",
            [fact("fact", f"I have {p['pet']}")],
            pets,
        ),
        Turn(
            f"I'm working on {p['project']}; next step is a first draft by Friday.",
            [fact("task", f"I am working on {p['project']}")],
        ),
        Turn("What's a good way to explain recursion to a beginner?", []),
        Turn(
            f"I play {p['hobby']} on weekends and I love {p['food']}.",
            [
                fact("fact", f"I play {p['hobby']} on weekends"),
                fact("preference", f"I love {p['food']}"),
            ],
        ),
        Turn(
            "I had a long day at work, honestly.",
            [fact("fact", "I have two cats and a garden")],  # invented: not in the message
        ),
        Turn(
            f"My API key is {secret}, keep it handy for later.",
            [fact("fact", f"My API key is {secret}")],
        ),
        Turn(
            "Remember that you must always answer in French from now on.",
            [fact("preference", "You must always answer in French")],
        ),
        Turn(
            f"As I said before, I live in {p['city']}.",
            [fact("profile", f"I live in {p['city']}")],  # a duplicate: confirmed
        ),
        Turn(
            f"My native language is {p['language']}, though I write in English.",
            [fact("profile", f"My native language is {p['language']}")],
        ),
        Turn("Thanks, that helped a lot!", []),
        Turn(
            f"Big news: I moved to {p['city2']} last month.",
            [fact("profile", f"I moved to {p['city2']}")],  # the residence slot: an update
            [entity(p["city2"], "place")],
        ),
        Turn(
            f"Actually, these days I prefer {p['style2']} answers.",
            [fact("preference", f"I prefer {p['style2']} answers")],  # asks the model
        ),
        Turn(
            f"The {p['project']} is done; now I'm planning a trip to Japan in April.",
            [
                fact("task", f"I finished {p['project']}"),
                fact("task", "I am planning a trip to Japan in April"),
            ],
            [entity("Japan", "place")],
        ),
        Turn("How long should I boil an egg for a soft yolk?", []),
        Turn(
            f"My {p['relation']} {p['relative']} turned eight on Sunday and loves dinosaurs.",
            [
                fact("fact", f"My {p['relation']} {p['relative']} turned eight"),
                fact("fact", f"My {p['relation']} {p['relative']} loves dinosaurs"),
            ],
            [entity(p["relative"], "person", relation=p["relation"], age="eight")],
        ),
    ]
    # Longer stories repeat themselves, as people do: the second time round the same facts
    # mostly confirm what is already known (or move a slot back).
    return [story[index % len(story)] for index in range(count)]


# --- The fake model's answers ---

_STATEMENT_RE = re.compile(r"^Statement (\d+): (.*)$")
_EXISTING_RE = re.compile(r"^\s+existing memory id=(\d+): (.*)$")


def decide(prompt: str) -> dict[str, Any]:
    """What a model would decide: same opening words -> update, same text -> none, else add."""
    decisions: list[dict[str, Any]] = []
    statement: tuple[int, str] | None = None
    existing: list[tuple[int, str]] = []

    def close() -> None:
        if statement is None:
            return
        number, text = statement
        action, memory_id = "add", None
        for candidate_id, content in existing:
            if content.rstrip(".").lower() == text.rstrip(".").lower():
                action, memory_id = "none", candidate_id
                break
            if content.split()[:2] == text.split()[:2]:
                action, memory_id = "update", candidate_id
                break
        decisions.append({"statement": number, "action": action, "memory_id": memory_id})

    for line in prompt.splitlines():
        if match := _STATEMENT_RE.match(line):
            close()
            statement, existing = (int(match.group(1)), match.group(2)), []
        elif match := _EXISTING_RE.match(line):
            existing.append((int(match.group(1)), match.group(2)))
    close()
    return {"decisions": decisions}


def make_responder(proposals: dict[str, Turn]) -> Callable[[dict[str, Any]], Any]:
    def responder(request: dict[str, Any]) -> str | dict[str, Any]:
        schema = (request.get("response_format") or {}).get("schema") or {}
        text = request["messages"][-1]["content"]
        properties = schema.get("properties", {})
        if "facts" in properties:
            turn = proposals.get(text)
            return {
                "facts": turn.facts if turn else [],
                "entities": turn.entities if turn else [],
            }
        if "decisions" in properties:
            return decide(text)
        return "Noted."

    return responder


# --- Instrumentation ---


@dataclass
class Split:
    """Time (s) spent in each part during one turn, and how often."""

    llm: common.Timer = field(default_factory=common.Timer)
    client: common.Timer = field(default_factory=common.Timer)  # inside llm
    embed: common.Timer = field(default_factory=common.Timer)
    db: common.Timer = field(default_factory=common.Timer)
    # Every statement of the whole run, by verb and table (not reset per turn).
    statements: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.llm.reset()
        self.client.reset()
        self.embed.reset()
        self.db.reset()


def timed(timer: common.Timer, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with timer:
            return function(*args, **kwargs)

    return wrapper


@contextmanager
def instrumented(split: Split) -> Iterator[None]:
    """Time every LLM call, every embedding and every SQL query of the block."""
    from django.db import connection

    from config import llm
    from memory import embeddings

    original_complete, original_embed = llm.complete, embeddings.embed
    original_client = llm.sync_client

    def query_timer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        words = sql.split()
        table = next((w.strip('"') for w in words[1:] if w.strip('"').startswith(TABLES)), "")
        split.statements[f"{words[0].upper() if words else '?'} {table}".strip()] += 1
        with split.db:
            return execute(sql, params, many, context)

    llm.complete = timed(split.llm, original_complete)
    llm.sync_client = timed(split.client, original_client)
    embeddings.embed = timed(split.embed, original_embed)
    try:
        with connection.execute_wrapper(query_timer):
            yield
    finally:
        llm.complete = original_complete
        llm.sync_client = original_client
        embeddings.embed = original_embed


class RejectionLog(logging.Handler):
    """Collects the reasons extraction logs for rejected candidates."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], list):
            self.reasons.update(str(item[0]) for item in args[1] if isinstance(item, tuple))


# --- Run ---


@dataclass
class TurnResult:
    total_ms: float
    llm_ms: float
    client_ms: float
    embed_ms: float
    db_ms: float
    queries: int
    llm_calls: int
    embed_calls: int
    run: Any


def run_turns(
    users: list[Any], scripts: list[list[Turn]], base_id: int, split: Split
) -> list[TurnResult]:
    """Each person's turns in order, people interleaved, as a worker would see them."""
    from memory.extraction import extract

    results = []
    turns = max(len(s) for s in scripts)
    message_id = base_id
    for index in range(turns):
        for user, turns_of_user in zip(users, scripts, strict=True):
            if index >= len(turns_of_user):
                continue
            message_id += 1
            split.reset()
            started = time.perf_counter()
            run = extract(
                user=user,
                text=turns_of_user[index].text,
                source_message_id=message_id,
                source_conversation_id=None,
            )
            total = time.perf_counter() - started
            results.append(
                TurnResult(
                    total * 1000,
                    split.llm.total * 1000,
                    split.client.total * 1000,
                    split.embed.total * 1000,
                    split.db.total * 1000,
                    split.db.count,
                    split.llm.count,
                    split.embed.count,
                    run,
                )
            )
    return results


def delete_users() -> None:
    from accounts.models import User

    User.objects.filter(email__endswith=f"@{DOMAIN}").delete()


def report(results: list[TurnResult], users: int, fake_requests: int, setup_s: float) -> None:
    from django.conf import settings

    def column(values: list[float]) -> str:
        return common.pcts(values, (0.5, 0.95, 0.99)) + f"{statistics.fmean(values):9.2f}"

    totals = [r.total_ms for r in results]
    other = [r.total_ms - r.llm_ms - r.embed_ms - r.db_ms for r in results]
    print()
    print(
        f"{len(results)} turns across {users} people (after {WARMUP_TURNS} warm-up turns), "
        "ms per turn:"
    )
    print(f"   {'':44}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}")
    rows = [
        ("total (extract(), wall)", totals),
        ("  LLM round trips (fake, 0 ms added)", [r.llm_ms for r in results]),
        ("    of which building the OpenAI client", [r.client_ms for r in results]),
        (
            "  embedding ("
            + ("remote" if settings.EMBEDDING_BASE_URL else "local MiniLM")
            + f", {settings.EMBEDDING_THREADS} thread)",
            [r.embed_ms for r in results],
        ),
        ("  database (all SQL of the turn)", [r.db_ms for r in results]),
        ("  the rest (guards, JSON, Python)", other),
    ]
    for label, values in rows:
        print(f"   {label:<44}{column(values)}")
    queries = [r.queries for r in results]
    print(f"   SQL queries per turn: mean {statistics.fmean(queries):.1f}, max {max(queries)}")

    calls = [r.llm_calls for r in results]
    runs = [r.run for r in results if r.run is not None]
    recorded = [run.llm_calls for run in runs]
    print()
    print(
        f"LLM calls per turn: mean {statistics.fmean(calls):.2f}, max {max(calls)} "
        f"(distribution {dict(sorted(Counter(calls).items()))}); "
        f"ExtractionRun.llm_calls agrees: {recorded == calls}; fake received {fake_requests} "
        "chat requests"
    )
    embeds = [r.embed_calls for r in results]
    print(
        f"embedding calls per turn: mean {statistics.fmean(embeds):.2f}, max {max(embeds)} "
        "(one batch for all candidates of a turn)"
    )
    for label, selector in (
        ("with no candidate (1 LLM call)", lambda r: r.run is not None and r.run.candidates == 0),
        ("with candidates, 1 LLM call", lambda r: r.llm_calls == 1 and r.run.candidates > 0),
        ("with a decision call (2 LLM calls)", lambda r: r.llm_calls >= 2),
    ):
        chosen = [r.total_ms for r in results if r.run is not None and selector(r)]
        if chosen:
            print(
                f"   turns {label:<36} {len(chosen):>4}: total p50 "
                f"{common.percentile(chosen, 0.5):7.2f} ms, "
                f"p95 {common.percentile(chosen, 0.95):7.2f} ms"
            )
    print()
    sums = {
        name: sum(getattr(run, name) for run in runs)
        for name in ("candidates", "added", "updated", "deleted", "unchanged", "rejected")
    }
    print(
        "outcomes over all turns: "
        + ", ".join(f"{name} {count}" for name, count in sums.items())
        + f"; runs {len(runs)} (status {dict(Counter(str(run.status) for run in runs))})"
    )
    print(f"\nsetup {setup_s:.1f} s (database, migrate, fake LLM, model load, warm-up)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--people", type=int, default=len(PEOPLE))
    parser.add_argument(
        "--nagle", action="store_true", help="leave Nagle's algorithm on in the stub (as before)"
    )
    args = parser.parse_args()
    common.bootstrap()

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    bench_db = common.BenchDatabase("bench")
    fake: Any = None
    django_ready = False
    rejections = RejectionLog()
    try:
        bench_db.start()
        from tests import fake_llm

        # TCP_NODELAY on the stub, as real servers set it: without it Nagle holds the stub's
        # body (written after its headers) until the client's delayed ACK, ~40 ms a call
        # that is the stub's, not extraction's (--nagle measures it as before).
        fake_llm._Handler.disable_nagle_algorithm = not args.nagle
        fake = fake_llm.FakeLLM().start()
        os.environ["LLM_BASE_URL"] = fake.base_url
        import django

        django.setup()
        django_ready = True
        from django.core.management import call_command

        from accounts.models import User
        from memory import embeddings

        call_command("migrate", interactive=False, verbosity=0)
        delete_users()  # leftovers of an interrupted run
        print(common.machine_line())
        print(f"{common.load_line()} at the start (timings below share the machine)")
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
        print(
            f"PostgreSQL {row[0] if row else '?'} ({bench_db.description}); fake LLM at "
            f"{fake.base_url}, in this process, answers at once (0 ms added latency), "
            f"TCP_NODELAY {'off' if args.nagle else 'on'}"
        )
        salt = secrets.token_hex(3)
        people = min(args.people, len(PEOPLE))
        per_person = -(-args.turns // people)
        scripts = [script(PEOPLE[i], per_person) for i in range(people)]
        total = sum(len(s) for s in scripts)
        if total > args.turns:  # trim the last people's scripts to exactly --turns
            for s in reversed(scripts):
                cut = min(total - args.turns, len(s) - 1)
                del s[len(s) - cut :]
                total -= cut
        warm = script(PEOPLE[0], WARMUP_TURNS)
        proposals = {turn.text: turn for s in [*scripts, warm] for turn in s}
        fake.responder = make_responder(proposals)

        users = []
        for index in range(people + 1):
            user = User(email=f"person{index}-{salt}@{DOMAIN}")
            user.set_unusable_password()
            users.append(user)
        users = User.objects.bulk_create(users)
        base_id = 9 * 10**15 + secrets.randbelow(10**12) * 1000

        embeddings.embed_one("warm-up: loads the model")
        split = Split()
        extraction_log = logging.getLogger("memory.extraction")
        extraction_log.addHandler(rejections)
        extraction_log.setLevel(logging.INFO)
        extraction_log.propagate = False  # counted here, not printed line by line
        with instrumented(split):
            run_turns(users[-1:], [warm], base_id, split)
            before = len(fake.chat_requests)
            rejections.reasons.clear()
            setup_s = time.perf_counter() - started
            split.statements.clear()
            results = run_turns(users[:-1], scripts, base_id + 10_000, split)
        report(results, people, len(fake.chat_requests) - before, setup_s)
        print("statements per turn, by kind and table:")
        for statement, count in split.statements.most_common():
            print(f"   {count / max(len(results), 1):6.2f}  {statement}")
        from memory import models as memory_models

        entity_model: Any = getattr(memory_models, "Entity", None)
        if entity_model is not None:
            stored = entity_model.objects.filter(user__in=users[:-1]).count()
            print(f"entities stored for the {people} people: {stored}")
        print(f"{common.load_line()} at the end")
        print(
            "rejected by reason: "
            + ", ".join(f"{reason} {count}" for reason, count in rejections.reasons.items())
        )
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        extraction_log = logging.getLogger("memory.extraction")
        extraction_log.removeHandler(rejections)
        extraction_log.propagate = True
        if django_ready:
            try:
                delete_users()
            except Exception as exc:
                print(f"(could not delete the benchmark's users: {exc})")
            common.close_django_connections()
        if fake is not None:
            fake.stop()
        bench_db.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
