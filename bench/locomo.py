"""Recall quality on LoCoMo: does `memory.services.recall` find the turns a question needs?

Run: `.venv/bin/python bench/locomo.py [--data PATH] [--learn] [--misses] [--quick] [--stores
a,b]` from the repository root. The data defaults to `../shared/eval/locomo-dev.json` next to
the checkout (the nearest `shared/eval/` above it). It starts an embedded PostgreSQL in `<data
dir>/bench-locomo/pg` (unless DATABASE_URL is set), migrates, and for each conversation and
each way of writing the memories ("store") creates one bench user whose memories are the
conversation's dialogue turns, kind "fact", embedded with the project's embedding model (one
batch), bulk-created, each tagged with its dia_id and kept as the product keeps memories:
`happened_at` = the session's date, `source_conversation_id` = the session, `source_message_id`
= the turn's position (so recall's time and context signals see what they would see in the
product):

- turn:             the turn's text
- dated:            "[<session date>] <speaker>: <text>"
- turn+facts:       the text, then the session `observation` facts tagged with that turn
- dated+facts:      the dated text, then the same facts
- turn, fact rows:  the text as one memory, and each fact as its own memory with the same dia_id
- dated, fact keys: the dated text, with the facts as its recall keys (full text only, not
                    embedded)
- dated, fact rows: the dated text as one memory, and each fact as its own memory
- dated, fact rows, shared keys: the dated text and each fact as memories of their own, each
                    with the others of its turn as recall keys: what extraction stores when
                    one message gives several memories (`memory.extraction._share_keys`)

For every question of categories 1-4 (5, adversarial, has no evidence) it then asks the real
`recall(user=..., query=question, embedding=..., limit=10, token_budget=1_000_000)` and ranks
the dia_ids of `Recalled.considered` (every returned item, best first; when several memories
point to the same turn only its first counts). R@k of a question = |evidence ∩ top k dia_ids|
/ |evidence|, averaged over all questions (the README's "share of evidence turns in the top
k"), overall and per category. Evidence ids are normalized ("D8:6; D9:17" is two ids, "D30:05"
is D30:5, "D:11:26" is D11:26); ids naming no turn of the conversation are dropped, and
questions left without evidence skipped (both counted in the output).

Modes: hybrid (recall as the chat calls it, with memory.services.WEIGHTS), vector only
(recall with an empty query text) and full text only (recall with text-only weights: its
BM25 order, MEMORY_MIN_SIMILARITY = 0). Checks (not with --quick): hybrid without the
similarity floor, and an exact numpy cosine ranking over the same vectors. Ablation (not
with --quick): recall with parts of the fusion switched off.

--learn: learns the fusion weights on the dev data (coordinate ascent over a grid, on an
offline mirror of RECALL_SQL's fusion fed with exact vector ranks and recall's own BM25
ranks), then validates leave-one-conversation-out: each conversation is ranked by the real
recall() with the weights learned on the other four. The memories' vectors are computed in
one batch and cached in `<data dir>/bench-locomo`; the questions are embedded one by one, as
in the chat. Recall latency is timed with the question's vector given.

--misses: where each evidence turn recall does not put in its top 10 sits, per category and
learning store: ranked 11-30 (returned, cut by the limit), a candidate that did not make the
30 returned rows, or no candidate at all (in none of the vector top, BM25 top and dated rows,
nor next to a top memory): what a better ranking could still win, and what it cannot.

Prints numbers; asserts nothing. Deletes its users and stops the PostgreSQL it started.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

Matrix = npt.NDArray[np.float32]

# The evaluation data sits next to the checkout: `../shared/eval/` (the main checkout is
# /work/main, so /work/shared/eval; a worktree one level deeper finds it one level up).
DATA_NAME = Path("shared") / "eval" / "locomo-dev.json"


def default_data() -> Path:
    """`../shared/eval/locomo-dev.json` relative to the checkout, or the nearest above it."""
    checkout = Path(__file__).resolve().parents[1]
    for folder in checkout.parents:
        if (folder / DATA_NAME).exists():
            return folder / DATA_NAME
    return checkout.parent / DATA_NAME


DOMAIN = "locomo.bench.invalid"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10)
LIMIT = 10  # recall's limit (its candidate depth is max(4 x limit, 20) per ranking)
TOKEN_BUDGET = 1_000_000
WARMUP = 20
STORES = (
    "turn",
    "dated",
    "turn+facts",
    "dated+facts",
    "turn, fact rows",
    "dated, fact keys",
    "dated, fact rows",
    "dated, fact rows, shared keys",
)
# README baselines (all ten conversations, 1,536 questions), R@5 / R@10.
BASELINES: dict[tuple[str, str], tuple[float, float, str]] = {
    ("turn", "text"): (0.436, 0.516, "BM25 over turns"),
    ("turn", "vector"): (0.372, 0.455, "cosine over turns"),
    ("dated", "vector"): (0.400, 0.501, 'cosine over "[date] speaker: text"'),
    ("turn", "hybrid"): (0.449, 0.549, "RRF of BM25 and cosine"),
    ("turn+facts", "vector"): (0.514, 0.610, "cosine over turn + facts"),
    ("turn+facts", "hybrid"): (0.583, 0.663, "RRF over turn + facts"),
}
STORE_WIDTH = max(len(store) for store in STORES)
EVIDENCE_RE = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")


# --- Data ---


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str
    date: str
    session: int = 0
    position: int = 0  # the turn's index in the whole conversation
    happened_at: datetime | None = None


@dataclass
class Question:
    text: str
    category: int
    evidence: set[str]


@dataclass
class Conversation:
    sample_id: str
    turns: list[Turn]
    facts: dict[str, list[str]]
    questions: list[Question]
    dropped_ids: list[str] = field(default_factory=list)
    skipped_questions: int = 0


def dia_ids(raw: Any) -> list[str]:
    """Normalized dia_ids in a (possibly malformed) evidence or observation tag."""
    values = raw if isinstance(raw, list) else [raw]
    return [f"D{int(a)}:{int(b)}" for value in values for a, b in EVIDENCE_RE.findall(str(value))]


def session_datetime(text: str) -> datetime | None:
    """ "1:56 pm on 8 May, 2023" as a UTC datetime (None if it does not parse)."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def load(path: Path) -> list[Conversation]:
    conversations = []
    for item in json.loads(path.read_text()):
        raw = item["conversation"]
        turns: list[Turn] = []
        sessions = sorted(
            (int(key.split("_")[1]), value)
            for key, value in raw.items()
            if re.fullmatch(r"session_\d+", key) and isinstance(value, list)
        )
        for number, session in sessions:
            date = str(raw.get(f"session_{number}_date_time", ""))
            when = session_datetime(date)
            for turn in session:
                turns.append(
                    Turn(
                        turn["dia_id"],
                        turn["speaker"],
                        turn["text"],
                        date,
                        number,
                        len(turns),
                        when,
                    )
                )
        known = {turn.dia_id for turn in turns}
        facts: dict[str, list[str]] = defaultdict(list)
        for per_speaker in item.get("observation", {}).values():
            for entries in per_speaker.values():
                for text, tag in entries:
                    for dia_id in dia_ids(tag):
                        if dia_id in known:
                            facts[dia_id].append(text)
        conversation = Conversation(item["sample_id"], turns, dict(facts), [])
        for qa in item["qa"]:
            if qa["category"] not in CATEGORIES:
                continue
            evidence = set()
            for raw_id in qa["evidence"]:
                ids = dia_ids(raw_id)
                if not ids:
                    conversation.dropped_ids.append(raw_id)
                for dia_id in ids:
                    if dia_id in known:
                        evidence.add(dia_id)
                    else:
                        conversation.dropped_ids.append(raw_id)
            if evidence:
                conversation.questions.append(Question(qa["question"], qa["category"], evidence))
            else:
                conversation.skipped_questions += 1
        conversations.append(conversation)
    return conversations


def keys_for(store: str, conversation: Conversation, dia_id: str, content: str) -> str:
    """The memory's recall keys (one fact a line, full text only, not in the embedding): in
    "dated, fact keys" the turn's facts; in "dated, fact rows, shared keys" the texts of the
    other memories of the same turn, as extraction shares them (`enrich_recall_keys`)."""
    if store == "dated, fact keys":
        return "\n".join(" ".join(fact.split()) for fact in conversation.facts.get(dia_id, []))
    if store == "dated, fact rows, shared keys":
        turn = [text for text, dia in rows_for(store, conversation) if dia == dia_id]
        return "\n".join(text for text in turn if text != content)
    return ""


def rows_for(store: str, conversation: Conversation) -> list[tuple[str, str]]:
    """(content, dia_id) of the memories of one conversation in one store."""
    rows = []
    for turn in conversation.turns:
        dated = f"[{turn.date}] {turn.speaker}: {turn.text}"
        facts = conversation.facts.get(turn.dia_id, [])
        if store == "turn":
            rows.append((turn.text, turn.dia_id))
        elif store == "dated":
            rows.append((dated, turn.dia_id))
        elif store == "turn+facts":
            rows.append((" ".join([turn.text, *facts]), turn.dia_id))
        elif store == "dated+facts":
            rows.append((" ".join([dated, *facts]), turn.dia_id))
        elif store == "dated, fact keys":
            rows.append((dated, turn.dia_id))  # the facts are its recall keys (keys_for)
        elif store in ("dated, fact rows", "dated, fact rows, shared keys"):
            rows.append((dated, turn.dia_id))
            rows += [(fact, turn.dia_id) for fact in facts]
        else:
            rows.append((turn.text, turn.dia_id))
            rows += [(fact, turn.dia_id) for fact in facts]
    return [(" ".join(content.split()), dia_id) for content, dia_id in rows]


# --- Storage ---


def delete_users() -> None:
    from accounts.models import User

    User.objects.filter(email__endswith=f"@{DOMAIN}").delete()


def embed_texts(texts: list[str], folder: Path) -> tuple[Matrix, str]:
    """Vectors of `texts` (one batch, with every core), cached on disk by model and texts."""
    from django.test import override_settings

    from memory import embeddings

    key = hashlib.sha256("\n".join([embeddings.embedding_model_name(), *texts]).encode())
    path = folder / f"embeddings-{key.hexdigest()[:16]}.npy"
    if path.exists():
        cached = np.load(path)
        if cached.shape == (len(texts), embeddings.embedding_dimensions()):
            return cached.astype(np.float32), f"read from {path}"
    threads = max(1, min(4, os.cpu_count() or 1))
    started = time.perf_counter()
    with override_settings(EMBEDDING_THREADS=threads):
        matrix = np.asarray(embeddings.embed(texts), dtype=np.float32)
    seconds = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    np.save(path, matrix)
    return matrix, (
        f"embedded in {seconds:.1f} s ({seconds / len(texts) * 1000:.1f} ms each, batched, "
        f"{threads} threads), cached in {path}"
    )


@dataclass
class Stored:
    users: dict[tuple[str, str], Any] = field(default_factory=dict)  # (sample, store) -> user
    dia_of: dict[int, str] = field(default_factory=dict)  # memory id -> dia_id
    memory_ids: dict[Any, list[int]] = field(default_factory=dict)  # user pk -> memory ids
    matrices: dict[Any, Matrix] = field(default_factory=dict)  # user pk -> their vectors

    @property
    def memories(self) -> int:
        return len(self.dia_of)


def store_memories(conversations: list[Conversation], vectors: dict[str, Matrix]) -> Stored:
    """One user per (conversation, store), with its memories bulk-created."""
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User
    from memory.models import Memory

    stored = Stored()
    for conversation in conversations:
        for index, store in enumerate(STORES):
            user = User(email=f"{conversation.sample_id}-{index}@{DOMAIN}")
            user.set_unusable_password()
            user.save()
            stored.users[conversation.sample_id, store] = user
            now = timezone.now()
            rows = rows_for(store, conversation)
            turns = {turn.dia_id: turn for turn in conversation.turns}
            # As the product keeps them: when it was said, and the message and conversation
            # it was learned from (a session is a conversation, a turn a message).
            memories = Memory.objects.bulk_create(
                [
                    Memory(
                        user=user,
                        kind=Memory.Kind.FACT,
                        content=content,
                        recall_keys=keys_for(store, conversation, dia_id, content),
                        embedding=vectors[content],
                        importance=0.5,
                        source_excerpt=dia_id,
                        source_conversation_id=turns[dia_id].session,
                        source_message_id=turns[dia_id].position,
                        happened_at=turns[dia_id].happened_at,
                        created_at=now,
                        updated_at=now,
                        expires_at=None,
                    )
                    for content, dia_id in rows
                ],
                batch_size=500,
            )
            ids = [int(memory.pk) for memory in memories]
            for memory_id, (_, dia_id) in zip(ids, rows, strict=True):
                stored.dia_of[memory_id] = dia_id
            stored.memory_ids[user.pk] = ids
            stored.matrices[user.pk] = np.stack([vectors[content] for content, _ in rows])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE memory_memory")
    return stored


# --- Ranking ---

Ranker = Callable[[Any, Question, list[float]], list[int]]


def recall_ranker(weights: Any = None, *, text_of: Callable[[str], str] = str) -> Ranker:
    """Memory ids in `recall`'s order (its `considered` list), asked with `text_of(question)`."""
    from memory.services import recall

    def rank(user: Any, question: Question, vector: list[float]) -> list[int]:
        recalled = recall(
            user=user,
            query=text_of(question.text),
            embedding=vector,
            limit=LIMIT,
            token_budget=TOKEN_BUDGET,
            weights=weights,
        )
        return [item.id for item in recalled.considered if item.source == "memory"]

    return rank


def text_weights() -> Any:
    """Full text only: recall's BM25 ranking, nothing else (run with MEMORY_MIN_SIMILARITY=0)."""
    from memory.services import RecallWeights

    return RecallWeights(vector=0.0, text=1.0, time=0.0, context=0.0)


def cosine_ranker(memory_ids: dict[Any, list[int]], matrices: dict[Any, Matrix]) -> Ranker:
    """Exact cosine in numpy over the same vectors: a check on recall's vector ranking."""

    def rank(user: Any, question: Question, vector: list[float]) -> list[int]:
        scores = matrices[user.pk] @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")[: 8 * LIMIT]
        ids = memory_ids[user.pk]
        return [ids[i] for i in order]

    return rank


# --- Learning the fusion weights (offline mirror of RECALL_SQL's fusion) ---

DEPTH = max(4 * LIMIT, 20)  # RECALL_SQL's candidates per ranking for LIMIT
TOP = max(3 * LIMIT, 20)  # and the relevant rows it returns
LEARN_STORES = ("dated", "dated+facts")
GRID: dict[str, tuple[float, ...]] = {
    "text": (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0),
    "rrf_k": (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0),
    "text_score": (0.0, 0.01, 0.03, 0.1, 0.3),
    "similarity": (0.0, 0.01, 0.03, 0.1, 0.3),
    "time": (0.0, 0.005, 0.01, 0.02, 0.04, 0.1),
    "context": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9),
    "context_span": (1, 2, 3, 5),
    "context_seeds": (3, 5, 10, 15, 20),
}


@dataclass
class UserIndex:
    """One bench user's memories in stored order, with what the fusion needs to know."""

    ids: list[int]
    dias: list[str]
    happened: list[datetime | None]
    neighbours: dict[int, list[list[int]]]  # span -> per memory, the others next to it


@dataclass
class QuestionFeatures:
    conversation: str
    question: Question
    similarity: npt.NDArray[np.float64]
    vector_rank: dict[int, int]  # memory index -> rank (1-based, top DEPTH)
    text_rank: dict[int, int]
    text_score: dict[int, float]  # memory index -> BM25 score (the top DEPTH)
    dated: list[int]  # indexes of the memories in the named period (top DEPTH by distance)
    in_period: set[int]  # every memory in the named period


def user_index(conversation: Conversation, store: str, ids: list[int]) -> UserIndex:
    turns = {turn.dia_id: turn for turn in conversation.turns}
    dias = [dia_id for _, dia_id in rows_for(store, conversation)]
    sessions = [turns[d].session for d in dias]
    positions = [turns[d].position for d in dias]
    # dense rank of the source message within its conversation (session), as the SQL does
    ordinal: list[int] = []
    per_session: dict[int, list[int]] = defaultdict(list)
    for i, session in enumerate(sessions):
        per_session[session].append(i)
    ordinal = [0] * len(dias)
    for members in per_session.values():
        distinct = sorted({positions[i] for i in members})
        where = {p: n for n, p in enumerate(distinct)}
        for i in members:
            ordinal[i] = where[positions[i]]
    neighbours: dict[int, list[list[int]]] = {}
    for span in GRID["context_span"]:
        lists = []
        for i in range(len(dias)):
            lists.append(
                [
                    j
                    for j in per_session[sessions[i]]
                    if j != i and abs(ordinal[j] - ordinal[i]) <= span
                ]
            )
        neighbours[int(span)] = lists
    return UserIndex(ids, dias, [turns[d].happened_at for d in dias], neighbours)


def mirror_rank(index: UserIndex, f: QuestionFeatures, w: Any, minimum: float) -> list[int]:
    """RECALL_SQL's relevant-memory order for weights `w`, computed in Python (indexes)."""
    from memory.services import score

    best = max(f.text_score.values(), default=0.0)
    fused = {
        i: score(
            vector_rank=f.vector_rank.get(i),
            text_rank=f.text_rank.get(i),
            similarity=float(f.similarity[i]),
            text_share=f.text_score.get(i, 0.0) / best if best > 0 else 0.0,
            in_period=i in f.in_period,
            weights=w,
        )
        for i in {*f.vector_rank, *f.text_rank, *f.dated}
    }
    lift: dict[int, float] = {}
    if w.context > 0:
        seeds = sorted(fused, key=lambda i: (-fused[i], index.ids[i]))[: w.context_seeds]
        for seed in seeds:
            for n in index.neighbours[w.context_span][seed]:
                lift[n] = max(lift.get(n, 0.0), w.context * fused[seed])
    relevance = {i: fused.get(i, 0.0) + lift.get(i, 0.0) for i in set(fused) | set(lift)}
    kept = [
        i
        for i in relevance
        if f.similarity[i] >= minimum
        or ((i in f.text_rank or i in lift) and f.similarity[i] >= minimum / 2)
    ]
    return sorted(kept, key=lambda i: (-relevance[i], index.ids[i]))[:TOP]


def recall_at(index: UserIndex, order: list[int], evidence: set[str], k: int) -> float:
    ranked: list[str] = []
    for i in order:
        if index.dias[i] not in ranked:
            ranked.append(index.dias[i])
            if len(ranked) == k:
                break
    return len(evidence & set(ranked)) / len(evidence)


def collect_features(
    conversations: list[Conversation],
    stored: Stored,
    store: str,
    query_vectors: dict[str, list[float]],
) -> tuple[dict[str, UserIndex], list[QuestionFeatures]]:
    """Per question: exact vector ranks (numpy), BM25 ranks (recall, text only), dated rows."""
    from django.test import override_settings
    from django.utils import timezone

    from memory import when
    from memory.services import recall

    indexes: dict[str, UserIndex] = {}
    features = []
    now = timezone.now()
    for conversation in conversations:
        user = stored.users[conversation.sample_id, store]
        ids = stored.memory_ids[user.pk]
        index = user_index(conversation, store, ids)
        indexes[conversation.sample_id] = index
        position = {memory_id: i for i, memory_id in enumerate(ids)}
        matrix = stored.matrices[user.pk]
        for question in conversation.questions:
            vector = np.asarray(query_vectors[question.text], dtype=np.float32)
            similarity = (matrix @ vector).astype(np.float64)
            order = np.lexsort((np.asarray(ids), -similarity))
            vector_rank = {int(i): r + 1 for r, i in enumerate(order[:DEPTH])}
            # BM25 ranks straight from recall (text only, deep enough to see the top DEPTH).
            with override_settings(MEMORY_MIN_SIMILARITY=0.0):
                recalled = recall(
                    user=user,
                    query=question.text,
                    embedding=query_vectors[question.text],
                    limit=DEPTH // 3 + 1,
                    token_budget=TOKEN_BUDGET,
                    weights=text_weights(),
                )
            in_text = [
                item
                for item in recalled.considered
                if item.source == "memory"
                and item.text_position is not None
                and item.text_position <= DEPTH
            ]
            text_rank = {position[item.id]: int(item.text_position or 0) for item in in_text}
            text_score = {position[item.id]: item.text_rank for item in in_text}
            period = when.period_in(question.text, now)
            inside: list[int] = []
            if period is not None:
                inside = [
                    int(i)
                    for i in order
                    if (happened := index.happened[i]) is not None
                    and period.start <= happened < period.end
                ]
            features.append(
                QuestionFeatures(
                    conversation.sample_id,
                    question,
                    similarity,
                    vector_rank,
                    text_rank,
                    text_score,
                    inside[:DEPTH],
                    set(inside),
                )
            )
    return indexes, features


def objective(
    data: dict[str, tuple[dict[str, UserIndex], list[QuestionFeatures]]],
    w: Any,
    minimum: float,
    conversations: set[str],
) -> tuple[float, float]:
    """Mean R@10 (then R@5) over the learning stores' questions of `conversations`."""
    r10: list[float] = []
    r5: list[float] = []
    for indexes, features in data.values():
        for f in features:
            if f.conversation not in conversations:
                continue
            index = indexes[f.conversation]
            order = mirror_rank(index, f, w, minimum)
            r10.append(recall_at(index, order, f.question.evidence, 10))
            r5.append(recall_at(index, order, f.question.evidence, 5))
    return statistics.fmean(r10), statistics.fmean(r5)


def learn(
    data: dict[str, tuple[dict[str, UserIndex], list[QuestionFeatures]]],
    minimum: float,
    conversations: set[str],
    start: Any,
) -> tuple[Any, tuple[float, float]]:
    """Coordinate ascent over GRID (two passes), maximizing the objective on `conversations`."""
    best = start
    best_value = objective(data, best, minimum, conversations)
    for _ in range(2):
        for name, values in GRID.items():
            for value in values:
                candidate = replace(best, **{name: type(getattr(best, name))(value)})
                result = objective(data, candidate, minimum, conversations)
                if result > best_value:
                    best, best_value = candidate, result
    return best, best_value


@dataclass
class Result:
    store: str
    mode: str
    hits: dict[int, list[float]] = field(default_factory=dict)  # k -> per-question R@k
    by_category: dict[int, dict[int, list[float]]] = field(default_factory=dict)
    returned: list[int] = field(default_factory=list)  # distinct turns ranked per question
    ms: list[float] = field(default_factory=list)

    def mean(self, k: int, category: int | None = None) -> float:
        values = self.hits[k] if category is None else self.by_category[category][k]
        return statistics.fmean(values) if values else 0.0


def evaluate(
    store: str,
    mode: str,
    ranker: Ranker,
    conversations: list[Conversation],
    users: dict[tuple[str, str], Any],
    dia_of: dict[int, str],
    query_vectors: dict[str, list[float]],
) -> Result:
    result = Result(store, mode, {k: [] for k in KS})
    result.by_category = {c: {k: [] for k in KS} for c in CATEGORIES}
    for conversation in conversations:
        user = users[conversation.sample_id, store]
        for question in conversation.questions:
            started = time.perf_counter()
            ids = ranker(user, question, query_vectors[question.text])
            result.ms.append((time.perf_counter() - started) * 1000)
            ranked: list[str] = []
            for memory_id in ids:
                dia_id = dia_of[memory_id]
                if dia_id not in ranked:
                    ranked.append(dia_id)
            result.returned.append(len(ranked))
            for k in KS:
                share = len(question.evidence & set(ranked[:k])) / len(question.evidence)
                result.hits[k].append(share)
                result.by_category[question.category][k].append(share)
    return result


# --- Report ---


def describe_data(conversations: list[Conversation]) -> None:
    questions = [q for c in conversations for q in c.questions]
    turns = sum(len(c.turns) for c in conversations)
    tagged = sum(len(c.facts) for c in conversations)
    facts = sum(len(v) for c in conversations for v in c.facts.values())
    categories = Counter(q.category for q in questions)
    print(
        f"data: {len(conversations)} conversations "
        f"({', '.join(c.sample_id for c in conversations)})"
        f", {turns:,} turns, {facts:,} observation facts on {tagged:,} turns"
    )
    print(
        f"questions: {len(questions)} of categories 1-4 ("
        + ", ".join(f"{CATEGORIES[c]} {categories[c]}" for c in CATEGORIES)
        + f"), {sum(len(q.evidence) for q in questions)} evidence turns"
    )
    dropped = [raw for c in conversations for raw in c.dropped_ids]
    skipped = sum(c.skipped_questions for c in conversations)
    print(
        f"evidence ids naming no turn, dropped: {len(dropped)} {sorted(set(dropped))}; "
        f"questions left without evidence, skipped: {skipped}"
    )


def print_table(results: list[Result]) -> None:
    print()
    print(
        f"{'store':<{STORE_WIDTH}} {'mode':<22} {'R@5':>6} {'R@10':>6}   {'ranked':>6}   "
        f"{'README (10 conv.)':<36} {'R@5':>6} {'R@10':>6}"
    )
    for r in results:
        base = BASELINES.get((r.store, r.mode))
        baseline = f"{base[2]:<36} {base[0]:6.3f} {base[1]:6.3f}" if base else ""
        print(
            f"{r.store:<{STORE_WIDTH}} {r.mode:<22} {r.mean(5):6.3f} {r.mean(10):6.3f}   "
            f"{statistics.fmean(r.returned):6.1f}   {baseline}"
        )
    print(
        "ranked = distinct turns in the ranked list, mean per question (recall keeps only items "
        "with similarity >= MEMORY_MIN_SIMILARITY, or half of it with a full-text match)"
    )


def print_categories(results: list[Result]) -> None:
    print()
    print("R@5 / R@10 by category")
    names = "".join(f"{name:>16}" for name in CATEGORIES.values())
    print(f"{'store':<{STORE_WIDTH}} {'mode':<22} {names}")
    for r in results:
        cells = "".join(f"{r.mean(5, c):>8.3f}{r.mean(10, c):>8.3f}" for c in CATEGORIES)
        print(f"{r.store:<{STORE_WIDTH}} {r.mode:<22} {cells}")


def merged(label: str, store: str, parts: list[Result]) -> Result:
    result = Result(store, label, {k: [] for k in KS})
    result.by_category = {c: {k: [] for k in KS} for c in CATEGORIES}
    for part in parts:
        for k in KS:
            result.hits[k] += part.hits[k]
            for c in CATEGORIES:
                result.by_category[c][k] += part.by_category[c][k]
        result.returned += part.returned
        result.ms += part.ms
    return result


def print_misses(
    conversations: list[Conversation], stored: Stored, query_vectors: dict[str, list[float]]
) -> None:
    """Where the evidence turns missed at 10 sit (offline mirror of recall with WEIGHTS)."""
    from django.conf import settings

    from memory.services import WEIGHTS

    places = ("top 10", "11-30", "candidate, cut", "no candidate")
    print()
    print("Where the evidence turns are (WEIGHTS, offline mirror; share of evidence turns)")
    print(
        f"{'store':<{STORE_WIDTH}} {'category':<12} {'turns':>6} "
        + "".join(f"{p:>16}" for p in places)
    )
    for store in LEARN_STORES:
        indexes, features = collect_features(conversations, stored, store, query_vectors)
        counts: dict[int, Counter[str]] = defaultdict(Counter)
        for f in features:
            index = indexes[f.conversation]
            order = mirror_rank(index, f, WEIGHTS, settings.MEMORY_MIN_SIMILARITY)
            ranked: list[str] = []
            for i in order:
                if index.dias[i] not in ranked:
                    ranked.append(index.dias[i])
            candidates = {index.dias[i] for i in {*f.vector_rank, *f.text_rank, *f.dated}}
            for dia_id in f.question.evidence:
                if dia_id in ranked[:10]:
                    place = places[0]
                elif dia_id in ranked:
                    place = places[1]
                elif dia_id in candidates:
                    place = places[2]
                else:
                    place = places[3]
                counts[f.question.category][place] += 1
        for category, name in CATEGORIES.items():
            total = sum(counts[category].values())
            cells = "".join(
                f"{counts[category][p]:>8} {counts[category][p] / max(total, 1):>6.1%} "
                for p in places
            )
            print(f"{store:<{STORE_WIDTH}} {name:<12} {total:>6} {cells}")


def learn_and_validate(
    conversations: list[Conversation],
    stored: Stored,
    query_vectors: dict[str, list[float]],
    run: Callable[..., Result],
) -> None:
    """Learn the weights on all five conversations, and leave-one-conversation-out."""
    from django.conf import settings

    from memory.services import WEIGHTS, RecallWeights

    started = time.perf_counter()
    data = {
        store: collect_features(conversations, stored, store, query_vectors)
        for store in LEARN_STORES
    }
    minimum = settings.MEMORY_MIN_SIMILARITY
    everyone = {c.sample_id for c in conversations}
    start = RecallWeights()
    print()
    print(
        f"Learning the fusion weights (coordinate ascent over {dict(GRID)}, objective: mean "
        f"R@10 then R@5 over the questions of stores {LEARN_STORES}; features in "
        f"{time.perf_counter() - started:.0f} s)"
    )
    for label, weights in (("plain RRF", start), ("WEIGHTS", WEIGHTS)):
        r10, r5 = objective(data, weights, minimum, everyone)
        print(f"  offline mirror, {label:<10} R@5 {r5:.3f} R@10 {r10:.3f}")
    learned, (r10, r5) = learn(data, minimum, everyone, start)
    print(f"  learned on all five: {learned}")
    print(f"  offline mirror, learned  R@5 {r5:.3f} R@10 {r10:.3f} (in-sample)")
    folds: dict[str, list[Result]] = defaultdict(list)
    for held in conversations:
        weights, (r10, r5) = learn(data, minimum, everyone - {held.sample_id}, start)
        print(f"  without {held.sample_id}: {weights} (train R@5 {r5:.3f} R@10 {r10:.3f})")
        for store in LEARN_STORES:
            folds[store].append(run(store, "LOO", recall_ranker(weights), [held]))
    print()
    print(
        "Leave-one-conversation-out: each conversation ranked by recall() with the weights "
        "learned on the other four"
    )
    loo = [merged("leave-one-out", store, parts) for store, parts in folds.items()]
    in_sample = [run(store, "WEIGHTS (all five)", recall_ranker()) for store in LEARN_STORES]
    print_table([row for pair in zip(in_sample, loo, strict=True) for row in pair])
    print_categories([row for pair in zip(in_sample, loo, strict=True) for row in pair])
    print(f"  (learning and validation took {time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument(
        "--learn",
        action="store_true",
        help="learn the fusion weights on the data, with leave-one-conversation-out validation",
    )
    parser.add_argument(
        "--misses",
        action="store_true",
        help="where the evidence turns missed at 10 sit: cut by the limit, or no candidate",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="skip the checks (no floor, numpy cosine) and the ablation",
    )
    parser.add_argument(
        "--stores",
        default="|".join(STORES),
        help=f"separated by '|' (store names hold commas), of: {' | '.join(STORES)}",
    )
    args = parser.parse_args()
    common.bootstrap()

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    bench_db = common.BenchDatabase("bench-locomo")
    django_ready = False
    try:
        conversations = load(args.data)
        bench_db.start()
        import django

        django.setup()
        django_ready = True
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection
        from django.test import override_settings

        from memory import embeddings

        call_command("migrate", interactive=False, verbosity=0)
        delete_users()  # leftovers of an interrupted run
        print(common.machine_line())
        print(f"{common.load_line()} at the start (timings below share the machine)")
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
        print(
            f"PostgreSQL {row[0] if row else '?'} ({bench_db.description}); embeddings "
            f"{embeddings.embedding_model_name()}"
            + (" (remote)" if settings.EMBEDDING_BASE_URL else " (local)")
            + f", {settings.EMBEDDING_THREADS} thread(s) for questions; recall limit={LIMIT} "
            f"(candidate depth {max(4 * LIMIT, 20)} per ranking), token_budget={TOKEN_BUDGET:,}, "
            f"MEMORY_MIN_SIMILARITY={settings.MEMORY_MIN_SIMILARITY}"
        )
        describe_data(conversations)

        embeddings.embed_one("warm-up: loads the model")
        texts = sorted(
            {content for c in conversations for s in STORES for content, _ in rows_for(s, c)}
        )
        matrix, how = embed_texts(texts, bench_db.root)
        vectors = dict(zip(texts, matrix, strict=True))
        t0 = time.perf_counter()
        stored = store_memories(conversations, vectors)
        print(
            f"{len(texts):,} distinct texts {how}; {stored.memories:,} memories stored for "
            f"{len(stored.users)} users in {time.perf_counter() - t0:.1f} s"
        )

        # Questions embedded one by one, as recall embeds a message.
        query_vectors: dict[str, list[float]] = {}
        embed_ms: list[float] = []
        for question in (q for c in conversations for q in c.questions):
            if question.text not in query_vectors:
                t0 = time.perf_counter()
                query_vectors[question.text] = embeddings.embed_one(question.text)
                embed_ms.append((time.perf_counter() - t0) * 1000)

        from memory.services import WEIGHTS, RecallWeights

        hybrid = recall_ranker()
        vector_only = recall_ranker(text_of=lambda text: "")
        text_only = recall_ranker(text_weights())
        cosine = cosine_ranker(stored.memory_ids, stored.matrices)
        first = conversations[0]
        for question in first.questions[:WARMUP]:
            user = stored.users[first.sample_id, "turn"]
            hybrid(user, question, query_vectors[question.text])

        def run(
            store: str, mode: str, ranker: Ranker, among: list[Conversation] | None = None
        ) -> Result:
            return evaluate(
                store,
                mode,
                ranker,
                among or conversations,
                stored.users,
                stored.dia_of,
                query_vectors,
            )

        print(f"recall weights (memory.services.WEIGHTS): {WEIGHTS}")
        results: list[Result] = []
        checks: list[Result] = []
        stores = [store for store in STORES if store in args.stores.split("|")]
        for store in stores:
            results.append(run(store, "hybrid", hybrid))
            results.append(run(store, "vector", vector_only))
            with override_settings(MEMORY_MIN_SIMILARITY=0.0):
                results.append(run(store, "text", text_only))
                if not args.quick:
                    checks.append(run(store, "hybrid, min sim 0", hybrid))
            if not args.quick:
                checks.append(run(store, "cosine (numpy)", cosine))

        print_table(results)
        print(
            "hybrid = recall() as the chat calls it (WEIGHTS); vector = recall() with an empty "
            "query text (no full-text match);\ntext = recall() with text-only weights (its BM25 "
            "order) and MEMORY_MIN_SIMILARITY=0"
        )
        if checks:
            print()
            print(
                "Checks: recall without its similarity floor, and an exact numpy cosine ranking "
                "over the same vectors"
            )
            print_table(checks)
        print_categories([r for r in results if r.mode != "text"])

        # What each part of the fusion adds (recall() itself, with weights switched off).
        steps = [
            ("BM25 + vector, plain RRF", RecallWeights()),
            ("+ learned fusion weights", replace(WEIGHTS, time=0.0, context=0.0)),
            ("+ time (dated matches)", replace(WEIGHTS, context=0.0)),
            ("+ context (= WEIGHTS)", WEIGHTS),
        ]
        ablation = [
            run(store, label, recall_ranker(weights))
            for store in ("turn", "dated", "dated+facts")
            if store in stores and not args.quick
            for label, weights in steps
        ]
        if ablation:
            print()
            print("Ablation: recall() with parts of the fusion switched off")
            print_table(ablation)
            print_categories(ablation)

        if args.misses:
            print_misses(conversations, stored, query_vectors)
        if args.learn:
            learn_and_validate(conversations, stored, query_vectors, run)
        print()
        print(f"latency per question, ms ({len(embed_ms)} questions)     p50      p95      p99")
        print(f"{'embed the question (embed_one)':<44}{common.pcts(embed_ms)}")
        for r in results:
            if r.mode != "text":
                label = f"recall() {r.mode}, store {r.store}"
                print(f"{label:<44}{common.pcts(r.ms)}")
        sizes = [len(c.turns) for c in conversations]
        print(
            f"(recall with the query vector given; {min(sizes)}-{max(sizes)} memories per user, "
            f"up to {max(len(rows_for('turn, fact rows', c)) for c in conversations)} in "
            "'turn, fact rows')"
        )
        print(f"{common.load_line()} at the end")
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        if django_ready:
            try:
                delete_users()
            except Exception as exc:
                print(f"(could not delete the benchmark's users: {exc})")
            common.close_django_connections()
        bench_db.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
