"""Which memories may go to which model: local-only rules, health detection, routing.

The rules, in one place:

- A memory is *local only* when the person marked it so, or (unless they marked it "any
  model") when its kind is one they keep local, or its text reads as health (allergies,
  medication, diagnoses, conditions: local only by default, MEMORY_LOCAL_ONLY_DEFAULT).
  A conversation summary is local only when the person keeps summaries local, its text
  reads as a local-only category, or a memory learned in its conversation is local only (the
  summary may restate it); an entity when its description reads as one.
- Recall for a prompt to a hosted endpoint leaves local-only items out and counts them, by
  reason, in the reply's recall record ("2 memories kept local: health").
- Text said to a local endpoint stays on local models: its extraction, title and summary go
  to a local background endpoint (`route`), and a hosted conversation's prompt leaves out the
  turns said to a local one. Text that reads as a local-only category goes local too. When
  no local endpoint can do it, the model's part is skipped (the deterministic extractor
  still learns; the provisional title stays; no summary is written).
- A hosted background model never sees local-only memories: reconciliation asks a local
  endpoint when a statement's neighbours include one, or leaves those neighbours out.

Where a memory was learned does not make it local only: locality follows what it says and
the person's rules, so a fact learned on the local model may be recalled on a hosted one
unless its kind or category is kept local.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from config import endpoints
from config.errors import DomainError
from memory.models import LocalOnlyRules, Memory
from memory.statements import CONDITION_NAMES, MEDICATIONS

HEALTH = "health"
CATEGORIES = ((HEALTH, "Health (allergies, medication, diagnoses, conditions)"),)
SUMMARY = "summary"
# What a person can keep local, in the order the settings show them.
KEYS = (
    (Memory.Kind.PROFILE.value, "Profile (name, job, where you live)"),
    (Memory.Kind.PREFERENCE.value, "Preferences"),
    (Memory.Kind.FACT.value, "Facts"),
    (Memory.Kind.TASK.value, "Tasks"),
    (SUMMARY, "Conversation summaries"),
    *CATEGORIES,
)
KEY_NAMES = tuple(key for key, _ in KEYS)
# How the recall record names a reason.
REASON_LABELS = {
    HEALTH: "health",
    SUMMARY: "summaries",
    "marked": "marked by you",
    **{kind: f"{label.lower()}s" for kind, label in Memory.Kind.choices},
}

# Words that say something about a person's health. Matched as words (or word starts, for
# the stems), case-insensitively; a false positive only keeps a memory on the local model.
_HEALTH_RE = re.compile(
    r"\b(?:"
    r"allerg\w*|intoleran\w*|anaphyla\w*|epipen|coeliac|celiac|"
    r"medication\w*|medicine\w*|meds|prescri\w*|pills?|dose|dosage|\d+\s?mg|insulin|inhaler|"
    r"antibiotic\w*|antidepressant\w*|painkiller\w*|ibuprofen|paracetamol|metformin|"
    r"statins?|chemo\w*|radiotherapy|dialysis|"
    r"diagnos\w*|disease\w*|disorder\w*|syndrome\w*|chronic|illness\w*|infection\w*|"
    r"diabet\w*|asthma\w*|cancer\w*|tumou?r\w*|epilep\w*|migraine\w*|arthritis|"
    r"hypertension|blood pressure|cholesterol|heart (?:attack|condition|disease|failure)|"
    r"stroke|hiv|hepatitis|covid|long covid|crohn\w*|ibs|"
    r"depress\w*|anxiety|panic attacks?|bipolar|schizophreni\w*|adhd|autis\w*|ptsd|ocd|"
    r"eating disorder|anorexi\w*|bulimi\w*|"
    r"pregnan\w*|miscarriage|ivf|fertility|"
    r"therap(?:y|ist)|psychiatr\w*|psycholog\w*|counsell?(?:ing|or)|"
    r"doctor|gp|physician|surgeon|surgery|hospital\w*|clinic|appointment with (?:my|the) dr|"
    r"disabilit\w*|wheelchair|"
    r"symptom\w*|injur\w*|sprain\w*|fractur\w*|"
    r"diabetic|asthmatic|epileptic|an(?:a)?emic|autistic|dyslexic|immunocompromised|"
    # The medicines and conditions the deterministic extractor reads ("I take sertraline").
    rf"{MEDICATIONS}|{CONDITION_NAMES}"
    r")\b",
    re.IGNORECASE,
)


def category_of(text: str) -> str | None:
    """The sensitive category a text belongs to ("health"), or None."""
    if text and _HEALTH_RE.search(text):
        return HEALTH
    return None


def _key(value: str) -> str | None:
    return value if value in KEY_NAMES else None


def default_keys() -> list[str]:
    return [k for k in (str(v).strip() for v in settings.MEMORY_LOCAL_ONLY_DEFAULT) if _key(k)]


class UnknownRule(DomainError):
    status = 400


@dataclass(frozen=True)
class Rules:
    """One person's local-only rules: the kinds and categories they keep on local models."""

    keys: frozenset[str] = field(default_factory=frozenset)

    def reason(self, *, kind: str, content: str, marked: bool | None = None) -> str | None:
        """Why an item is local only ("marked", a kind, "summary", "health"), or None.

        `marked` is the memory's own setting: True keeps it local whatever the rules, False
        lets it go to any model whatever the rules.
        """
        if marked is True:
            return "marked"
        if marked is False:
            return None
        if kind in self.keys:
            return kind
        category = category_of(content)
        if category and category in self.keys:
            return category
        return None

    def as_dict(self) -> dict[str, bool]:
        return {key: key in self.keys for key in KEY_NAMES}


def rules_for(*, user: Any) -> Rules:
    """The person's rules (one indexed read), or the operator's defaults if they chose none."""
    keys = (
        LocalOnlyRules.objects.filter(user_id=getattr(user, "pk", user))
        .values_list("keys", flat=True)
        .first()
    )
    if keys is None:
        return Rules(frozenset(default_keys()))
    return Rules(frozenset(k for k in keys if _key(k)))


def set_rules(*, user: Any, local_only: dict[str, bool]) -> Rules:
    """Change some of the person's rules (`{"fact": True, "health": False}`); unknown keys
    raise UnknownRule. The others keep their current value. One upsert."""
    unknown = sorted(set(local_only) - set(KEY_NAMES))
    if unknown:
        raise UnknownRule(
            f"Unknown kind or category {', '.join(repr(u) for u in unknown)}: use any of "
            f"{', '.join(KEY_NAMES)}."
        )
    current = set(rules_for(user=user).keys)
    for key, value in local_only.items():
        if value:
            current.add(key)
        else:
            current.discard(key)
    keys = [k for k in KEY_NAMES if k in current]
    LocalOnlyRules.objects.update_or_create(user_id=user.pk, defaults={"keys": keys})
    return Rules(frozenset(keys))


def hosted_reasons(
    *, user: Any, items: list[tuple[str, int, str, str]]
) -> dict[tuple[str, int], str]:
    """{(source, id): reason} for recalled items (source, id, kind, content) that must not go
    to a hosted endpoint. One round trip reads the person's rules, the own setting of the
    recalled memories, and the memories learned in the recalled summaries' conversations: a
    summary is local only when it reads as a local-only category, when the person keeps
    summaries local, or when a memory learned in its conversation is local only (it may
    restate it)."""
    from django.db import connection

    from memory.models import ConversationSummary

    if not items:
        return {}
    quote = connection.ops.quote_name
    rules_table = quote(LocalOnlyRules._meta.db_table)
    memory_table = quote(Memory._meta.db_table)
    summary_table = quote(ConversationSummary._meta.db_table)
    user_id = getattr(user, "pk", user)
    memory_ids = [i for source, i, _, _ in items if source == "memory"]
    summary_ids = [i for source, i, _, _ in items if source == "summary"]
    # Table names from model metadata; values are parameters.
    sql = f"""
        SELECT 'rules', NULL::bigint, NULL::boolean, NULL::text, NULL::text,
               (SELECT keys FROM {rules_table} WHERE user_id = %s)
        UNION ALL
        SELECT 'memory', id, local_only, NULL, NULL, NULL FROM {memory_table}
        WHERE user_id = %s AND id = ANY(%s) AND local_only IS NOT NULL
        UNION ALL
        SELECT 'summary', s.id, m.local_only, m.kind, m.content, NULL
        FROM {summary_table} s JOIN {memory_table} m
             ON m.user_id = s.user_id AND m.source_conversation_id = s.conversation_id
        WHERE s.user_id = %s AND s.id = ANY(%s) AND m.local_only IS NOT FALSE
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id, user_id, memory_ids, user_id, summary_ids])
        rows = cursor.fetchall()
    keys = next((row[5] for row in rows if row[0] == "rules"), None)
    if isinstance(keys, str):  # a driver that does not decode jsonb
        import json

        keys = json.loads(keys)
    rules = (
        Rules(frozenset(default_keys()))
        if keys is None
        else Rules(frozenset(k for k in keys if _key(k)))
    )
    marked = {row[1]: row[2] for row in rows if row[0] == "memory"}
    learned: dict[int, list[tuple[str, str, bool | None]]] = {}
    for row in rows:
        if row[0] == "summary":
            learned.setdefault(row[1], []).append((row[3], row[4], row[2]))
    found: dict[tuple[str, int], str] = {}
    for source, item_id, kind, content in items:
        if source == "memory":
            reason = rules.reason(kind=kind, content=content, marked=marked.get(item_id))
        elif source == "summary":
            reason = rules.reason(kind=SUMMARY, content=content) or next(
                (
                    r
                    for k, c, m in learned.get(item_id, [])
                    if (r := rules.reason(kind=k, content=c, marked=m))
                ),
                None,
            )
        else:
            reason = rules.reason(kind=source, content=content)
        if reason:
            found[(source, item_id)] = reason
    return found


def memory_reason(memory: Memory, rules: Rules) -> str | None:
    return rules.reason(kind=memory.kind, content=memory.content, marked=memory.local_only)


def annotate(memories: Iterable[Memory], *, user: Any, rules: Rules | None = None) -> None:
    """Set `kept_local` (the reason, or "") and `category` on each memory, for pages/APIs."""
    rules = rules or rules_for(user=user)
    for memory in memories:
        memory.kept_local = memory_reason(memory, rules) or ""  # type: ignore[attr-defined]
        memory.category = category_of(memory.content) or ""  # type: ignore[attr-defined]


def local_only_ids(*, user: Any, memories: list[Memory], rules: Rules | None = None) -> set[int]:
    """The ids of `memories` that are local only. Their own setting is read in one query
    (the callers' rows may not have loaded it)."""
    if not memories:
        return set()
    rules = rules or rules_for(user=user)
    marked = dict(
        Memory.objects.for_user(user)
        .filter(pk__in=[m.pk for m in memories])
        .values_list("pk", "local_only")
    )
    return {
        m.pk
        for m in memories
        if rules.reason(kind=m.kind, content=m.content, marked=marked.get(m.pk)) is not None
    }


def held_back_record(reasons: list[str], endpoint: endpoints.Endpoint | None = None) -> dict:
    """The recall record's note of what was kept from a hosted prompt, and its sentence."""
    counts = Counter(REASON_LABELS.get(r, r) for r in reasons)
    total = sum(counts.values())
    why = ", ".join(label for label, _ in counts.most_common())
    text = f"{total} memor{'y' if total == 1 else 'ies'} kept local: {why}"
    record: dict[str, Any] = {"count": total, "reasons": dict(counts), "text": text}
    if endpoint is not None:
        record["endpoint"] = endpoint.name
    return record


# --- Routing background work ---


@dataclass(frozen=True)
class Route:
    """Where one piece of background work may go: `endpoint`, or nowhere (None)."""

    endpoint: endpoints.Endpoint | None
    # Whether only local models may see this work's text.
    local_required: bool = False

    @property
    def target(self) -> endpoints.Target | None:
        return self.endpoint.background if self.endpoint else None

    @property
    def local(self) -> bool:
        return self.endpoint is not None and self.endpoint.local


def route(
    *, endpoint_names: Iterable[str] = (), texts: Iterable[str] = (), user: Any = None
) -> Route:
    """The endpoint for background work on text said to `endpoint_names` (message endpoints).

    Local when any of that text was said to a local endpoint, or reads as a category the
    person keeps local (health by default); otherwise the background endpoint. None when it
    must stay local and no local endpoint exists.
    """
    preferred = endpoints.background_endpoint()
    if preferred.local:
        return Route(preferred)  # nothing leaves the operator's machines: no need to look
    local_required = any(endpoints.is_local_name(name) for name in endpoint_names)
    if not local_required:
        keys = rules_for(user=user).keys if user is not None else frozenset(default_keys())
        local_required = any((category_of(t) or "") in keys for t in texts)
    if not local_required:
        return Route(preferred)
    return Route(endpoints.local_background_endpoint(), local_required=True)


def for_conversation(conversation: Any) -> endpoints.Endpoint:
    return endpoints.get(getattr(conversation, "endpoint", ""))


# --- Writes ---


def set_memory_local_only(*, user: Any, memory_id: int, local_only: bool | None) -> Memory:
    """Keep one memory on local models (True), let it go to any model (False), or follow the
    person's rules again (None). One UPDATE scoped to the person; raises MemoryGone."""
    from memory.services import MemoryGone

    updated = Memory.objects.for_user(user).filter(pk=memory_id).update(local_only=local_only)
    if not updated:
        raise MemoryGone("This memory no longer exists; it may have been deleted elsewhere.")
    return Memory.objects.for_user(user).get(pk=memory_id)
