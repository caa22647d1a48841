"""Tests of memory.embeddings: local ONNX vectors against reference values, and the remote API."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from config.llm import LLMError
from memory import embeddings
from tests.fake_llm import FakeLLM, fake_embedding

# Made once by sentence-transformers on torch in full precision (see "source" in the file).
REFERENCE = json.loads((Path(__file__).parent / "minilm_reference.json").read_text())
# The same expression as the file's "long_text": 682 tokens, so truncation to 256 is compared.
LONG_TEXT = " ".join(
    f"On day {i} I walked the dog along the river and wrote notes about the weather."
    for i in range(1, 41)
)

# First components of the reference vectors, written out so that a change shows in review.
REFERENCE_HEADS = {
    "I live in Berlin with my two cats.": [
        0.146262, -0.011383, 0.058985, 0.044575, -0.065559, 0.044287, 0.006881, -0.024116,
    ],
    "My favourite food is sushi.": [
        -0.041841, -0.003489, 0.01717, 0.095031, -0.033469, 0.01403, 0.052667, -0.060681,
    ],
    "Remind me to call the dentist on Tuesday morning.": [
        -0.054602, -0.035059, 0.005593, 0.008243, -0.100344, -0.065593, -0.074881, 0.1136,
    ],
}  # fmt: skip
# int8 weights move single components by up to ~0.006 from full precision (measured); the
# direction of the whole vector stays within cosine 0.9993.
COMPONENT_TOLERANCE = 0.01
MIN_COSINE = 0.99


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def reference_vector(text: str) -> list[float]:
    key = "<long_text>" if text == LONG_TEXT else text
    for entry in REFERENCE["references"]:
        if entry["text"] == key:
            return list(entry["vector"])
    raise KeyError(text)


@pytest.fixture
def local(settings: Any) -> None:
    settings.EMBEDDING_BASE_URL = ""
    settings.EMBEDDING_DIMENSIONS = 384
    settings.EMBEDDING_MODEL_PATH = ""


@pytest.fixture
def remote(settings: Any, fake_llm: FakeLLM) -> FakeLLM:
    settings.EMBEDDING_BASE_URL = fake_llm.base_url
    settings.EMBEDDING_API_KEY = "test-key"
    settings.EMBEDDING_MODEL = "fake-embed-384"
    settings.EMBEDDING_DIMENSIONS = 384
    return fake_llm


def test_reference_file_matches_the_written_out_components() -> None:
    for text, head in REFERENCE_HEADS.items():
        assert reference_vector(text)[:8] == head


@pytest.mark.usefixtures("local")
def test_local_vectors_match_the_full_precision_model() -> None:
    texts = [*REFERENCE_HEADS, LONG_TEXT]
    vectors = embeddings.embed(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert cosine(vector, reference_vector(text)) >= MIN_COSINE, text
    for text, vector in zip(REFERENCE_HEADS, vectors[:3], strict=True):
        assert vector[:8] == pytest.approx(REFERENCE_HEADS[text], abs=COMPONENT_TOLERANCE)


@pytest.mark.usefixtures("local")
def test_local_vectors_are_384_d_and_unit_length() -> None:
    vectors = embeddings.embed(["A short one.", "", LONG_TEXT])
    assert embeddings.embedding_model_name() == "all-MiniLM-L6-v2-int8"
    for vector in vectors:
        assert len(vector) == embeddings.EMBEDDING_DIM == 384
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.usefixtures("local")
def test_a_fact_is_closer_to_its_question_than_to_an_unrelated_fact() -> None:
    fact = embeddings.embed_one("I live in Berlin")
    question = embeddings.embed_one("Where do I live? Berlin")
    unrelated = embeddings.embed_one("My favourite food is sushi")
    assert cosine(fact, question) > cosine(fact, unrelated)


@pytest.mark.usefixtures("local")
def test_batching_gives_the_same_vectors_as_one_by_one() -> None:
    # Different lengths, so batches are padded; more texts than one batch holds.
    texts = [f"Note {i}: " + "the quick brown fox jumps " * (i % 7) for i in range(40)]
    batched = embeddings.embed(texts)
    for text, vector in zip(texts, batched, strict=True):
        assert vector == pytest.approx(embeddings.embed_one(text), abs=1e-5)


def test_embed_of_nothing_is_nothing(fake_llm: FakeLLM) -> None:
    assert embeddings.embed([]) == []
    assert fake_llm.embedding_requests == []


def test_remote_returns_the_servers_vectors_and_sends_model_and_dimensions(
    remote: FakeLLM,
) -> None:
    texts = ["I live in Berlin", "My favourite food is sushi"]
    vectors = embeddings.embed(texts)
    assert embeddings.embedding_model_name() == "fake-embed-384"
    for text, vector in zip(texts, vectors, strict=True):
        assert len(vector) == 384
        assert vector == pytest.approx(fake_embedding(text, 384), abs=1e-6)
    (request,) = remote.embedding_requests
    assert request["model"] == "fake-embed-384"
    assert request["dimensions"] == 384
    assert request["input"] == texts
    # The embedding endpoint's own key, not the chat model's.
    assert remote.requests[-1].headers["authorization"] == "Bearer test-key"


def test_remote_server_error_raises_llm_error(remote: FakeLLM) -> None:
    remote.fail(500, endpoint="embeddings")
    with pytest.raises(LLMError):
        embeddings.embed_one("I live in Berlin")
