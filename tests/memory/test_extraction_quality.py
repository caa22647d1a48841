"""Extraction quality on the public labeled set (tests/memory/labeled_extraction.py).

Every case runs through the real extraction service (`learn_from_message`, so incognito and
assistant turns take the real path) with the fake LLM as the background model, in two moods:
a model that proposes nothing, and one that behaves like SmolLM2-135M (echoes its few-shot
example, copies the message, and turns any name it sees into "My name is …" or "I live in …").
The scores are printed (run with -s) and held to the targets of issue #11.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.factories import UserFactory
from tests.fake_llm import FakeLLM
from tests.memory.labeled_extraction import CASES, Score, run_case, score_case

pytestmark = pytest.mark.django_db

_NAME_RE = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+\b")


def _schema_keys(request: dict[str, Any]) -> set[str]:
    schema = (request.get("response_format") or {}).get("schema") or {}
    return set(schema.get("properties", {}))


def nothing(request: dict[str, Any]) -> str | dict[str, Any]:
    """An endpoint that finds nothing (and cannot decide anything)."""
    if "decisions" in _schema_keys(request):
        return {"decisions": []}
    return {"facts": [], "entities": []}


def smollm2_like(request: dict[str, Any]) -> str | dict[str, Any]:
    """What SmolLM2-135M was seen to do: echo the example, copy the message, misread names."""
    text = request["messages"][-1]["content"]
    if "decisions" in _schema_keys(request):
        return "I think you should update it."
    facts = [
        {"kind": "profile", "content": "My name is Ana"},
        {"kind": "profile", "content": "I work as a nurse"},
        {"kind": "profile", "content": "I live in Porto"},
        {"kind": "fact", "content": text},
    ]
    entities = []
    for name in _NAME_RE.findall(text):
        facts.append({"kind": "profile", "content": f"My name is {name}"})
        facts.append({"kind": "profile", "content": f"I live in {name}"})
        entities.append({"name": name, "type": "person", "attributes": {"job": "nurse"}})
    return {"facts": facts, "entities": entities}


def _run(fake_llm: FakeLLM, responder: Any) -> Score:
    fake_llm.responder = responder
    total = Score()
    for case in CASES:
        live = run_case(case, UserFactory())
        score_case(case, live, total)
    return total


def _check(total: Score, label: str) -> None:
    print(f"\n[{label}] {total.line()}\n{total.details()}")
    assert total.cases >= 80
    assert total.recall >= 0.9
    assert total.junk_rate <= 0.05
    assert total.stale == []
    assert total.duplicate_rate <= 0.02


def test_the_labeled_set_is_learned_well_when_the_model_proposes_nothing(
    fake_llm: FakeLLM, settings: Any
) -> None:
    settings.MEMORY_DUPLICATE_SIMILARITY = 0.9
    _check(_run(fake_llm, nothing), "model proposes nothing")


def test_the_labeled_set_is_learned_well_when_the_model_echoes_junk_like_smollm2(
    fake_llm: FakeLLM, settings: Any
) -> None:
    # The real default's name, so extraction treats it as the small model it imitates.
    settings.LLM_BACKGROUND_MODEL = "smollm2-135m-instruct"
    _check(_run(fake_llm, smollm2_like), "model echoes junk like SmolLM2")
