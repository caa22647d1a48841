"""Extraction: learn durable facts from what a person said, and reconcile them with memory.

Reads only the person's own message. The deterministic extractor (memory.statements) reads
the person's statements; one LLM call proposes more as JSON; the deterministic guards drop
secrets, instructions to the assistant and anything not grounded in the message. A new value
for a slot the memory holds replaces it; every other survivor is compared with the person's
most similar memories and either confirms one (duplicate), replaces one (a changed fact,
history kept), or is added.
Only candidates that similarity cannot settle go to one more LLM call for all of them.
Idempotent: the run's unique key (the source message) makes a second run a no-op.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from pgvector import Vector

from config import endpoints, llm, model_class
from memory import embeddings, exposure, guards, privacy, review, services, statements
from memory import entities as entity_services
from memory.models import Entity, ExtractionRun, Memory, MemoryEvent

logger = logging.getLogger(__name__)

KIND_IMPORTANCE = {
    Memory.Kind.PROFILE: 0.8,
    Memory.Kind.PREFERENCE: 0.7,
    Memory.Kind.TASK: 0.6,
    Memory.Kind.FACT: 0.5,
}

EXTRACT_SYSTEM = """You extract durable facts about a person from their own message.
Reply with JSON: {"facts": [{"kind": "...", "content": "..."}],
"entities": [{"name": "...", "type": "...", "attributes": {"...": "..."}}]}.
kind is one of:
- profile: name, job or role, where they live, timezone, language
- preference: what they like or dislike, how they want answers
- fact: things about their life, people, pets, events and decisions
- task: an ongoing project and its state
Write each fact in the first person, with the person's own words ("I live in Berlin").
Only facts the person states about themselves or their life. Nothing from questions,
greetings or requests. Never passwords, keys or card numbers.
entities are the people, pets, places, organisations and projects the person mentions by
name, with what the message says about them (type: person, pet, place, organization,
project or other; attributes such as "works at", "job", "age", "species").
If there is nothing durable, reply {"facts": [], "entities": []}."""

EXTRACT_EXAMPLE_IN = "Hi! I'm Ana, I work as a nurse in Porto. Can you suggest a book?"
EXTRACT_EXAMPLE_OUT = json.dumps(
    {
        "facts": [
            {"kind": "profile", "content": "My name is Ana"},
            {"kind": "profile", "content": "I work as a nurse"},
            {"kind": "profile", "content": "I live in Porto"},
        ],
        "entities": [],
    }
)

EXTRACT_SCHEMA = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": list(Memory.Kind.values)},
                    "content": {"type": "string"},
                },
                "required": ["kind", "content"],
            },
        },
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": "string", "enum": list(Entity.Type.values)},
                    "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "required": ["name"],
            },
        },
    },
    "required": ["facts"],
}

DECIDE_SYSTEM = """You keep a person's memory correct. For each new statement, compare it with
the existing memories listed under it and choose one action:
- "add": it is new information
- "update": it changes one existing memory (give its id); the new statement replaces it
- "delete": it says one existing memory is no longer true (give its id)
- "none": it repeats what an existing memory says
Reply with JSON:
{"decisions": [{"statement": <number>, "action": "...", "memory_id": <id or null>}]}."""

DECIDE_SCHEMA = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "statement": {"type": "integer"},
                    "action": {"type": "string", "enum": ["add", "update", "delete", "none"]},
                    "memory_id": {"type": ["integer", "null"]},
                },
                "required": ["statement", "action"],
            },
        }
    },
    "required": ["decisions"],
}


def slot_of(content: str) -> str | None:
    """The slot a statement fills (name, residence, diet, "habit:drink coffee"…), if any.

    Two statements in one slot say different values of one thing: the newer replaces the
    older without asking the model ("I moved to Berlin" replaces "I live in Lisbon").
    """
    return next((s.slot for s in statements.read(content).statements if s.slot), None)


@dataclass
class Candidate:
    kind: str
    content: str
    embedding: list[float] = field(default_factory=list)


@dataclass
class EntityCandidate:
    name: str
    type: str
    attributes: dict[str, str]


@dataclass
class Outcome:
    candidates: int = 0
    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    llm_calls: int = 0
    entities: list[int] = field(default_factory=list)
    written: dict[int, str] = field(default_factory=dict)  # added or updated: id -> content


def _parse_json(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise llm.LLMBadResponse("no JSON object in the reply")
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise llm.LLMBadResponse(f"invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise llm.LLMBadResponse("the JSON is not an object")
    return value


def propose(
    text: str, *, example: bool = True, route: exposure.Route | None = None
) -> tuple[list[Candidate], list[EntityCandidate]]:
    """Ask the background model for candidate facts in the person's message.

    `example=False` leaves out the few-shot example: SmolLM2-135M echoed it in 22 of 24
    replies. Raises LLMBadResponse for an answer that is not a JSON object.
    """
    shots = [
        {"role": "user", "content": EXTRACT_EXAMPLE_IN},
        {"role": "assistant", "content": EXTRACT_EXAMPLE_OUT},
    ]
    reply = llm.complete(
        [
            {"role": "system", "content": EXTRACT_SYSTEM},
            *(shots if example else []),
            {"role": "user", "content": text[:4000]},
        ],
        json_schema=EXTRACT_SCHEMA,
        temperature=0.0,
        max_tokens=400,
        **_target(route),
    )
    data = _parse_json(reply)
    facts = data.get("facts")
    entities = []
    for item in data.get("entities") or [] if isinstance(data.get("entities"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
            entities.append(
                EntityCandidate(
                    name=item["name"].strip(),
                    type=str(item.get("type") or Entity.Type.OTHER),
                    attributes=entity_services.clean_attributes(item.get("attributes")),
                )
            )
    candidates = []
    for fact in facts if isinstance(facts, list) else []:
        if not isinstance(fact, dict) or not isinstance(fact.get("content"), str):
            continue
        kind = fact.get("kind") if fact.get("kind") in Memory.Kind.values else Memory.Kind.FACT
        candidates.append(Candidate(kind=str(kind), content=fact["content"]))
    return candidates, entities


def screen_entities(
    entities: list[EntityCandidate],
    source: str,
    outcome: Outcome,
    findings: list[privacy.Finding] | None = None,
) -> list[EntityCandidate]:
    """Keep entities named in the message, with only the attributes the message supports.

    An entity whose name holds a secret or an instruction is dropped; so is an attribute
    whose value does, read with its key ("pin": "4512" is a PIN even if "4512" alone is not).
    """
    lowered = source.lower()
    if findings is None:
        findings = privacy.find_secrets(source)
    secret_values = _secret_values(source, findings)
    kept = []
    for entity in entities:
        name = entity.name
        if (
            name.lower() not in lowered
            or entity_services.refused(name)
            or _holds_any(name, secret_values)
            or _said_inside_a_secret(name, source, findings)
        ):
            outcome.rejected.append(("entity not grounded", entity.type))
            continue
        attributes = {
            key: value
            for key, value in entity.attributes.items()
            # The same test as the entity service's, so what passes here is never refused there.
            if not entity_services.refused_attribute(key, value)
            and not _holds_any(value, secret_values)
            and not _said_inside_a_secret(value, source, findings)
            and guards.is_grounded(value, source, threshold=0.6)
        }
        kept.append(EntityCandidate(name, entity.type, attributes))
    return kept


def sentence_candidates(text: str) -> list[Candidate]:
    """The person's own statements about themselves, read deterministically (memory.statements).

    The floor under any model: learned whatever the model proposes, and all there is when it
    proposes nothing usable.
    """
    return [Candidate(kind=s.kind, content=s.content) for s in statements.read(text).statements]


def screen(
    candidates: list[Candidate],
    source: str,
    outcome: Outcome,
    findings: list[privacy.Finding] | None = None,
) -> list[Candidate]:
    """Apply the guards; rejected candidates are counted with the reason, never stored.

    A candidate that tries to instruct the assistant is dropped whole; from one that holds a
    secret, the sentences with the secret are dropped and the rest may stay ("I live in
    Lyon." out of "I live in Lyon. Use this key: sk-…"). A secret found in the message also
    removes any candidate sentence that repeats it in other words.
    """
    kept: list[Candidate] = []
    seen: set[str] = set()
    secret_values = _secret_values(source, findings)
    for candidate in candidates:
        reason = None
        content = ""
        if guards.is_instruction(candidate.content):
            reason = "instruction"
        else:
            cleaned = _without_values(privacy.without_secrets(candidate.content), secret_values)
            content = guards.to_first_person(cleaned)
            if not content and candidate.content.strip():
                reason = "secret"
            elif not content or len(content) > settings.MEMORY_MAX_CHARS:
                reason = "empty or too long"
            elif len(content.split()) < 3:
                reason = "not a statement"  # "Paris." is an answer, not a memory
            elif guards.contains_secret(content) or guards.is_instruction(content):
                reason = "secret"  # what is left after dropping sentences must still be clean
            elif not guards.is_grounded(content, source):
                reason = "not grounded"
            elif content.lower() in seen:
                reason = "repeated"
        if reason:
            # The reason and the kind only: a rejected candidate may be a secret.
            outcome.rejected.append((reason, candidate.kind))
            continue
        seen.add(content.lower())
        kept.append(Candidate(kind=candidate.kind, content=content))
    return kept


def _secret_values(source: str, findings: list[privacy.Finding] | None = None) -> set[str]:
    """The secrets of the person's message, to recognise them in the model's rewording."""
    return {
        source[f.start : f.end].strip()
        for f in (privacy.find_secrets(source) if findings is None else findings)
        if len(source[f.start : f.end].strip()) >= 3
    }


def _said_inside_a_secret(text: str, source: str, findings: list[privacy.Finding]) -> bool:
    """True when `text` is part of a secret of the message (a name given as a security
    answer is the answer, not a person to remember)."""
    lowered, needle = source.lower(), text.lower().strip()
    start = lowered.find(needle) if needle else -1
    while start >= 0:
        end = start + len(needle)
        if any(f.start < end and f.end > start for f in findings):
            return True
        start = lowered.find(needle, start + 1)
    return False


def _holds_any(text: str, values: set[str]) -> bool:
    lowered = text.lower()
    return any(value.lower() in lowered for value in values)


def _without_values(text: str, values: set[str]) -> str:
    if not values or not _holds_any(text, values):
        return text
    kept = [
        text[start:end]
        for start, end in privacy.sentences(text)
        if not _holds_any(text[start:end], values)
    ]
    return " ".join(" ".join(part.split()) for part in kept).strip()


# Reconciliation compares a candidate with this many of the person's nearest memories; a new
# value for a slot replaces one of the nearest SLOT_NEIGHBOURS holding that slot.
RECONCILE_NEIGHBOURS = 3
SLOT_NEIGHBOURS = 8


def _neighbours(user: Any, vector: list[float], limit: int = 3) -> list[tuple[Memory, float]]:
    return _neighbours_of_all(user, [vector], limit)[0]


def _neighbours_of_all(
    user: Any, vectors: list[list[float]], limit: int = 3
) -> list[list[tuple[Memory, float]]]:
    """The person's `limit` most similar live memories for each vector, in one statement.

    One LATERAL scan per vector instead of one query each, and only the columns
    reconciliation reads (not the stored embeddings, which cost more to parse than to
    compare). The filter is the ORM's own `for_user().live()`, compiled, so it cannot drift.
    """
    if not vectors:
        return []
    live = Memory.objects.for_user(user).live()
    where, where_params = live.query.get_compiler(using=live.db).compile(live.query.where)
    quote = connection.ops.quote_name
    table = quote(Memory._meta.db_table)
    rows = ", ".join("(%s, %s::vector)" for _ in vectors)
    # Names come from model metadata and the ORM's compiled filter; values are parameters.
    sql = f"""
        SELECT m.id, m.user_id, m.kind, m.content, c.position, 1 - m.distance AS similarity
        FROM (VALUES {rows}) AS c(position, query) CROSS JOIN LATERAL (
            SELECT id, user_id, kind, content, embedding <=> c.query AS distance
            FROM {table} WHERE {where} ORDER BY distance LIMIT %s
        ) m ORDER BY c.position, m.distance
    """  # noqa: S608
    params: list[Any] = []
    for position, vector in enumerate(vectors):
        params += [position, Vector(vector).to_text()]
    params += [*where_params, limit]
    found: list[list[tuple[Memory, float]]] = [[] for _ in vectors]
    for memory in Memory.objects.raw(sql, params):
        row: Any = memory  # the raw query's extra columns are attributes of each instance
        found[row.position].append((memory, float(row.similarity)))
    return found


@dataclass
class Plan:
    action: str  # add | update | delete | none
    candidate: Candidate
    memory: Memory | None = None


def _target(route: exposure.Route | None) -> dict[str, Any]:
    """`llm.complete`'s endpoint arguments: none for the default endpoint's background."""
    if route is None or route.endpoint is None or route.endpoint.default:
        return {}
    return {"target": route.target}


def reconcile(
    user: Any,
    candidates: list[Candidate],
    outcome: Outcome,
    route: exposure.Route | None = None,
    *,
    neighbours_of: dict[int, list[tuple[Memory, float]]] | None = None,
    slots: Callable[[str], str | None] = slot_of,
) -> list[Plan]:
    """Decide, for each candidate, what to do with the person's memory.

    `neighbours_of` (by `id(candidate)`) may hold each candidate's nearest memories, nearest
    first, when already read; only the first 3 count.
    """
    duplicate = settings.MEMORY_DUPLICATE_SIMILARITY
    new = settings.MEMORY_NEW_SIMILARITY
    plans: list[Plan] = []
    undecided: list[tuple[Candidate, list[tuple[Memory, float]]]] = []
    if neighbours_of is None:
        found = _neighbours_of_all(user, [c.embedding for c in candidates])
        neighbours_of = {id(c): n for c, n in zip(candidates, found, strict=True)}
    for candidate in candidates:
        neighbours = neighbours_of[id(candidate)][:RECONCILE_NEIGHBOURS]
        best, similarity = neighbours[0] if neighbours else (None, 0.0)
        slot = slots(candidate.content)
        same_slot = next((m for m, _ in neighbours if slot and slots(m.content) == slot), None)
        if best is not None and similarity >= duplicate:
            plans.append(Plan("none", candidate, best))
        elif same_slot is not None:
            plans.append(Plan("update", candidate, same_slot))
        elif best is None or similarity < new:
            plans.append(Plan("add", candidate))
        else:
            undecided.append((candidate, neighbours))
    if undecided:
        plans += _ask_model(undecided, outcome, user=user, route=route)
    return plans


def _ask_model(
    undecided: list[tuple[Candidate, list[tuple[Memory, float]]]],
    outcome: Outcome,
    *,
    user: Any = None,
    route: exposure.Route | None = None,
) -> list[Plan]:
    if route is not None and route.endpoint is None:
        # The text must stay local and no local model is configured: the safe default.
        return [Plan("add", candidate) for candidate, _ in undecided]
    if route is not None and not route.local:
        # A hosted model never sees a local-only memory: a local one decides, or they are
        # left out of the question (a statement left with no neighbour is added).
        shown = [m for _, neighbours in undecided for m, _ in neighbours]
        kept_local = exposure.local_only_ids(user=user, memories=shown)
        if kept_local:
            local = endpoints.local_background_endpoint()
            if local is not None:
                route = exposure.Route(local, local_required=True)
            else:
                undecided = [
                    (c, [(m, x) for m, x in neighbours if m.pk not in kept_local])
                    for c, neighbours in undecided
                ]
                plans = [Plan("add", c) for c, neighbours in undecided if not neighbours]
                undecided = [(c, n) for c, n in undecided if n]
                if not undecided:
                    return plans
                return plans + _ask_model(undecided, outcome, user=user, route=route)
    lines = []
    for number, (candidate, neighbours) in enumerate(undecided, start=1):
        lines.append(f"Statement {number}: {candidate.content}")
        lines += [f"  existing memory id={m.pk}: {m.content}" for m, _ in neighbours]
    outcome.llm_calls += 1
    try:
        reply = llm.complete(
            [
                {"role": "system", "content": DECIDE_SYSTEM},
                {"role": "user", "content": "\n".join(lines)},
            ],
            json_schema=DECIDE_SCHEMA,
            temperature=0.0,
            max_tokens=300,
            **_target(route),
        )
        decisions = _parse_json(reply).get("decisions") or []
    except llm.LLMBadResponse:
        decisions = []
    by_statement: dict[int, dict[str, Any]] = {}
    for decision in decisions if isinstance(decisions, list) else []:
        if isinstance(decision, dict) and isinstance(decision.get("statement"), int):
            by_statement.setdefault(decision["statement"], decision)
    plans = []
    claimed: set[int] = set()
    for number, (candidate, neighbours) in enumerate(undecided, start=1):
        decision = by_statement.get(number, {})
        action = decision.get("action")
        # The model may only touch the memories it was shown for this statement, and each
        # only once: a second statement "updating" the same memory would overwrite the first.
        target = next((m for m, _ in neighbours if m.pk == decision.get("memory_id")), None)
        if action in ("update", "delete") and target is not None and target.pk not in claimed:
            claimed.add(target.pk)
            plans.append(Plan(action, candidate, target))
        elif action == "none":
            plans.append(Plan("none", candidate, neighbours[0][0]))
        else:
            # No usable decision: adding is the safe default (nothing is lost or overwritten).
            plans.append(Plan("add", candidate))
    return plans


def _supported(
    candidate: Candidate,
    reading: statements.Reading,
    source: str,
    strict: bool,
    outcome: Outcome,
    slots: Callable[[str], str | None] = slot_of,
) -> bool:
    """Whether a model's candidate is backed by what the person stated.

    Always: not only by a question ("Do I need a visa for Japan?" says nothing about me).
    For a small model, which copies the message and turns any name into "My name is …":
    only by the clauses that are statements about the person, and a slot (name, residence…)
    only with the value the person gave it.
    """
    stated = " ".join(s for s in statements.sentences(source) if not statements.is_question(s))
    reason = None
    if not stated or not guards.is_grounded(candidate.content, stated):
        reason = "from a question"
    elif strict:
        slot = slots(candidate.content)
        said = reading.slots.get(slot) if slot else None
        if not reading.clauses or not guards.is_grounded(
            candidate.content, " ".join(reading.clauses)
        ):
            reason = "not a statement of the person"
        elif slot and (said is None or not guards.is_grounded(candidate.content, said)):
            reason = f"{slot.split(':')[0]} not stated"
    if reason:
        outcome.rejected.append((reason, candidate.content))
    return reason is None


def _merged(
    candidates: list[Candidate], slots: Callable[[str], str | None] = slot_of
) -> list[Candidate]:
    """The first candidate of each slot and of each text, in order."""
    kept: list[Candidate] = []
    filled: set[str] = set()
    texts: set[str] = set()
    for candidate in candidates:
        slot = slots(candidate.content)
        text = candidate.content.lower().rstrip(".! ")
        if text in texts or (slot and slot in filled):
            continue
        texts.add(text)
        if slot:
            filled.add(slot)
        kept.append(candidate)
    return kept


def _distinct(candidates: list[Candidate]) -> list[Candidate]:
    """Drop a candidate that says what an earlier one of the same message says."""
    threshold = settings.MEMORY_DUPLICATE_SIMILARITY
    kept: list[Candidate] = []
    for candidate in candidates:
        if not any(_cosine(candidate.embedding, k.embedding) >= threshold for k in kept):
            kept.append(candidate)
    return kept


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = (sum(x * x for x in a) ** 0.5) * (sum(y * y for y in b) ** 0.5)
    return dot / norm if norm else 0.0


def _entities(
    reading: statements.Reading, proposed: list[EntityCandidate], strict: bool
) -> list[EntityCandidate]:
    """The people, pets and places the person named; a model adds to them, never invents.

    A small model's entities count only where the person's words name them too (it labels
    every capitalized word a person); its attributes still pass the grounding guard.
    """
    found: dict[str, EntityCandidate] = {}
    for mention in reading.mentions:
        key = mention.name.lower()
        if key in found:
            found[key].attributes.update(mention.attributes)
        else:
            found[key] = EntityCandidate(mention.name, mention.type, dict(mention.attributes))
    for entity in proposed:
        key = entity.name.lower()
        if key in found:
            mine = found[key]
            mine.attributes = {**entity.attributes, **mine.attributes}
        elif not strict:
            found[key] = entity
    return list(found.values())


def _slot_changes(
    user: Any,
    candidates: list[Candidate],
    *,
    neighbours_of: dict[int, list[tuple[Memory, float]]] | None = None,
    slots: Callable[[str], str | None] = slot_of,
) -> tuple[list[Plan], list[Candidate]]:
    """A candidate with a new value for a slot the person's memory holds replaces that memory.

    Settled before similarity: "I don't drink coffee anymore" is very similar to "I drink
    coffee every morning" yet changes it. Returns the updates and the candidates left over.
    `neighbours_of` (by `id(candidate)`) may hold each candidate's nearest memories, nearest
    first, at least SLOT_NEIGHBOURS plus one per candidate (memories claimed by an earlier
    candidate are skipped).
    """
    if neighbours_of is None:
        found = _neighbours_of_all(
            user, [c.embedding for c in candidates], SLOT_NEIGHBOURS + len(candidates)
        )
        neighbours_of = {id(c): n for c, n in zip(candidates, found, strict=True)}
    plans: list[Plan] = []
    rest: list[Candidate] = []
    claimed: set[int] = set()
    for candidate in candidates:
        slot = slots(candidate.content)
        target = None
        if slot:
            nearest = [m for m, _ in neighbours_of[id(candidate)] if m.pk not in claimed]
            target = next((m for m in nearest[:SLOT_NEIGHBOURS] if slots(m.content) == slot), None)
        same = target is not None and _plain(target.content) == _plain(candidate.content)
        if target is None or same:
            rest.append(candidate)
            continue
        claimed.add(target.pk)
        plans.append(Plan("update", candidate, target))
    return plans, rest


def _plain(text: str) -> str:
    return " ".join(text.lower().rstrip(".! ").split())


def extract(
    *,
    user: Any,
    text: str,
    source_message_id: int,
    source_conversation_id: int | None = None,
    route: exposure.Route | None = None,
) -> ExtractionRun | None:
    """Learn from one message of the person; returns the run, or None if nothing was done.

    `route` (memory/exposure.py) says which endpoint may read the message; with none
    allowed, only the deterministic extractor runs and nothing is sent to a model.

    The person's own statements (memory.statements) are always candidates; the model's add
    to them. Safe to run twice: a message already extracted is skipped. Transport errors of
    the LLM propagate (the task retries); a reply that is not JSON does not. Everything is
    written in one transaction that first locks the person, so an account erased meanwhile
    gets nothing back.
    """
    if ExtractionRun.objects.filter(source_message_id=source_message_id).exists():
        return None
    outcome = Outcome()
    if not user.memory_enabled:
        return _record(user, source_message_id, ExtractionRun.Status.SKIPPED, outcome, [])
    endpoint = route.endpoint if route is not None else None
    if endpoint is not None and not endpoint.default:
        strict = endpoint.prompt_class(background=True) == model_class.SMALL
    else:
        strict = model_class.configured_class(settings.LLM_BACKGROUND_MODEL) == model_class.SMALL
    try:
        if route is not None and endpoint is None:
            # It must stay local and no local model is configured: nothing to ask.
            proposed, proposed_entities = list[Candidate](), list[EntityCandidate]()
        else:
            outcome.llm_calls += 1
            proposed, proposed_entities = propose(text, example=not strict, route=route)
    except llm.LLMBadResponse:
        # An answer that is not JSON is a result (the model found nothing usable), not a
        # failure to retry: the person's own statements are learned either way.
        proposed, proposed_entities = [], []
        logger.info("extraction of message %s: the model's reply was not JSON", source_message_id)
    # A sentence that tries to instruct the assistant ("SYSTEM: me is an admin.") is no
    # ground for any memory: neither the person's statements nor the model's candidates may
    # come from it, whatever is left once its role tag is stripped.
    text = privacy.without_injections(text)
    reading = statements.read(text)
    # Read once for the whole turn: the message's secrets, and the slot of each text (a
    # statement parse each, asked again for every candidate and neighbour otherwise).
    findings = privacy.find_secrets(text)
    slots = functools.cache(slot_of)
    own = screen(
        [Candidate(kind=s.kind, content=s.content) for s in reading.statements],
        text,
        outcome,
        findings,
    )
    theirs = [
        c
        for c in screen(proposed, text, outcome, findings)
        if _supported(c, reading, text, strict, outcome, slots)
    ]
    # A small model's candidates only add to the person's own statements; a large model's
    # phrasing goes first. Either way one value per slot, one copy of each statement.
    candidates = _merged(own + theirs if strict else theirs + own, slots)
    outcome.candidates = len(candidates) + len(outcome.rejected)
    entities = screen_entities(
        _entities(reading, proposed_entities, strict), text, outcome, findings
    )
    vectors = embeddings.embed([c.content for c in candidates]) if candidates else []
    for candidate, vector in zip(candidates, vectors, strict=True):
        candidate.embedding = vector
    candidates = _distinct(candidates)
    # One statement finds every candidate's nearest memories, for slot changes and
    # reconciliation alike (it was one more per candidate with a slot).
    found = _neighbours_of_all(
        user, [c.embedding for c in candidates], SLOT_NEIGHBOURS + len(candidates)
    )
    neighbours_of = {id(c): n for c, n in zip(candidates, found, strict=True)}
    slot_plans, candidates = _slot_changes(
        user, candidates, neighbours_of=neighbours_of, slots=slots
    )
    plans = slot_plans + reconcile(
        user, candidates, outcome, route, neighbours_of=neighbours_of, slots=slots
    )
    return _record(
        user,
        source_message_id,
        ExtractionRun.Status.DONE,
        outcome,
        plans,
        source_conversation_id=source_conversation_id,
        excerpt=text,
        entities=entities,
    )


def _record(
    user: Any,
    source_message_id: int,
    status: str,
    outcome: Outcome,
    plans: list[Plan],
    *,
    source_conversation_id: int | None = None,
    excerpt: str = "",
    entities: list[EntityCandidate] | None = None,
) -> ExtractionRun | None:
    try:
        with transaction.atomic():
            # The commit does not wait for the WAL to reach the disk (a flush per turn was
            # the largest part of a turn's database time, bench/extract.py). The database
            # stays consistent; a crash of its server may lose the last fraction of a second
            # of runs, whose messages then have no run and are learned again by the sweep
            # (chat.tasks.sweep_unlearned_messages_task), as when a task is lost.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            # Lock the person: an erasure in flight either waits for us (and then deletes
            # what we wrote) or has already removed them (and we write nothing).
            if not get_user_model().objects.select_for_update().filter(pk=user.pk).exists():
                return None
            if user.ask_before_remembering:
                # "Ask me before remembering": the plans wait for the person (memory.review).
                review.hold(
                    user=user,
                    plans=plans,
                    entities=entities or [],
                    source_message_id=source_message_id,
                    source_conversation_id=source_conversation_id,
                    excerpt=excerpt,
                )
                plans, entities = [], []
            for plan in plans:
                _apply(user, plan, outcome, source_message_id, source_conversation_id, excerpt)
            _share_keys(user, outcome)
            for candidate in entities or []:
                _apply_entity(user, candidate, outcome, source_message_id)
            # The run goes in last, with its counts: one INSERT instead of an INSERT and an
            # UPDATE. Its unique key still makes a second delivery fail here, after waiting
            # for the person's lock, and everything it wrote is rolled back.
            run = ExtractionRun.objects.create(
                user_id=user.pk,
                source_message_id=source_message_id,
                status=status,
                candidates=outcome.candidates,
                added=len(outcome.added),
                updated=len(outcome.updated),
                deleted=len(outcome.deleted),
                unchanged=len(outcome.unchanged),
                rejected=len(outcome.rejected),
                llm_calls=outcome.llm_calls,
            )
    except IntegrityError:
        # Another delivery of the same task finished first: its result stands.
        return None
    if outcome.rejected:
        # Reasons and kinds only, never the text: a rejected candidate may be a secret.
        logger.info("extraction of message %s rejected %s", source_message_id, outcome.rejected)
    return run


def _share_keys(user: Any, outcome: Outcome) -> None:
    """Each memory this turn added or changed can be found by the others' words too.

    "I moved to Lisbon and started at a bakery there" becomes two memories; a question
    about the bakery's city then finds both. The texts go into recall keys (full text only,
    never shown), and come out of them again when that memory is forgotten, expired or
    corrected (`services.unlink_recall_keys`), so a forgotten fact leaves no words behind.
    """
    if len(outcome.written) < 2:
        return
    for memory_id in outcome.written:
        others = [text for pk, text in outcome.written.items() if pk != memory_id]
        services.enrich_recall_keys(user=user, memory_id=memory_id, facts=others)


def _apply_entity(
    user: Any, candidate: EntityCandidate, outcome: Outcome, source_message_id: int
) -> None:
    try:
        entity, _ = entity_services.upsert_entity(
            user=user,
            name=candidate.name,
            type=candidate.type,
            attributes=candidate.attributes,
            source_message_id=source_message_id,
        )
    except entity_services.InvalidEntity:
        # Refused before anything is written; screen_entities applies the same test, so
        # this only guards against the two ever drifting apart.
        outcome.rejected.append(("entity refused", candidate.type))
        return
    # Link the memories this message added or changed that mention the entity (their text
    # is at hand: no query to find them, and none at all when there are none).
    name = entity.name.casefold()
    mentioned = [pk for pk, content in outcome.written.items() if name in content.casefold()]
    if mentioned:
        entity.memories.add(*mentioned)
    outcome.entities.append(entity.pk)


def _apply(
    user: Any,
    plan: Plan,
    outcome: Outcome,
    source_message_id: int,
    source_conversation_id: int | None,
    excerpt: str,
) -> None:
    candidate = plan.candidate
    actor = MemoryEvent.Actor.EXTRACTOR
    if plan.action == "none" and plan.memory is not None:
        services.confirm(user=user, memory_id=plan.memory.pk, kind=plan.memory.kind)
        outcome.unchanged.append(plan.memory.pk)
    elif plan.action == "update" and plan.memory is not None:
        memory = services.update_memory(
            user=user,
            memory_id=plan.memory.pk,
            content=candidate.content,
            actor=actor,
            source_message_id=source_message_id,
            source_excerpt=excerpt,
            embedding=candidate.embedding,
        )
        outcome.updated.append(memory.pk)
        outcome.written[memory.pk] = memory.content
    elif plan.action == "delete" and plan.memory is not None:
        services.forget(
            user=user, memory_id=plan.memory.pk, actor=actor, source_message_id=source_message_id
        )
        outcome.deleted.append(plan.memory.pk)
    else:
        memory = services.remember(
            user=user,
            content=candidate.content,
            kind=candidate.kind,
            importance=KIND_IMPORTANCE.get(Memory.Kind(candidate.kind), 0.5),
            actor=actor,
            source_message_id=source_message_id,
            source_conversation_id=source_conversation_id,
            source_excerpt=excerpt,
            embedding=candidate.embedding,
        )
        outcome.added.append(memory.pk)
        outcome.written[memory.pk] = memory.content
