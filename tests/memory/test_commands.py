"""Management commands of the memory app: `reembed` after an embedding model change."""

from __future__ import annotations

from io import StringIO
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chat import services as chat_services
from memory import embeddings, services
from memory.models import ConversationSummary, Memory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

TEXTS = [
    "I live in Berlin.",
    "I prefer short answers.",
    "I have a cat named Miso.",
    "I am learning Portuguese.",
    "I play the cello.",
]


@pytest.fixture
def stored(user: Any, other_user: Any) -> None:
    """Memories and a summary embedded by the local model, for two people."""
    for index, text in enumerate(TEXTS):
        services.remember(user=user if index % 2 else other_user, content=text)
    services.save_summary(
        user=user,
        conversation_id=chat_services.start_conversation(user=user).pk,
        conversation_title="Music",
        content="I asked which cello strings to buy.",
        last_message_id=1,
        message_count=2,
    )


def _switch_to_remote(settings: Any, fake_llm: FakeLLM) -> None:
    settings.EMBEDDING_BASE_URL = fake_llm.base_url
    settings.EMBEDDING_MODEL = "fake-embed-384"
    settings.EMBEDDING_DIMENSIONS = 384


def _vectors() -> dict[tuple[str, int], np.ndarray]:
    rows = [("memory", m.pk, m.embedding) for m in Memory.objects.all()]
    rows += [("summary", s.pk, s.embedding) for s in ConversationSummary.objects.all()]
    return {(source, pk): np.asarray(vector) for source, pk, vector in rows}


def _contents() -> dict[tuple[str, int], str]:
    contents = {("memory", m.pk): m.content for m in Memory.objects.all()}
    contents |= {("summary", s.pk): s.content for s in ConversationSummary.objects.all()}
    return contents


def _reembed(**options: Any) -> str:
    out = StringIO()
    call_command("reembed", stdout=out, **options)
    return out.getvalue()


@pytest.mark.usefixtures("stored")
def test_reembed_replaces_every_vector_with_the_current_models(
    settings: Any, fake_llm: FakeLLM
) -> None:
    before = _vectors()
    _switch_to_remote(settings, fake_llm)

    output = _reembed(batch_size=2)

    after = _vectors()
    assert after.keys() == before.keys() and len(after) == 6
    requests = fake_llm.embedding_requests
    for key, content in _contents().items():
        assert not np.allclose(after[key], before[key], atol=1e-3)
        assert np.allclose(after[key], embeddings.embed_one(content), atol=1e-6)
    # In batches: 5 memories in batches of 2, then the one summary.
    assert [len(r["input"]) for r in requests] == [2, 2, 1, 1]
    assert "memories: 2/5" in output and "memories: 5/5" in output
    assert "summaries: 1/1" in output
    assert "Re-embedded 5 memories and 1 summaries." in output
    assert "fake-embed-384" in output


@pytest.mark.usefixtures("stored")
def test_reembed_run_again_changes_nothing(settings: Any, fake_llm: FakeLLM) -> None:
    _switch_to_remote(settings, fake_llm)
    _reembed()
    first = _vectors()

    output = _reembed(batch_size=100)

    second = _vectors()
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert "Re-embedded 5 memories and 1 summaries." in output


@pytest.mark.usefixtures("stored")
def test_reembed_stops_with_an_error_when_the_embedder_fails(
    settings: Any, fake_llm: FakeLLM
) -> None:
    before = _vectors()
    _switch_to_remote(settings, fake_llm)
    fake_llm.fail(500, endpoint="embeddings")

    with pytest.raises(CommandError, match="Embedding failed after 0 memories"):
        _reembed(batch_size=10)

    after = _vectors()
    assert all(np.array_equal(before[key], after[key]) for key in before)


def test_reembed_refuses_a_batch_size_below_one(db: None) -> None:
    with pytest.raises(CommandError, match="at least 1"):
        _reembed(batch_size=0)


def test_reembed_of_an_empty_database_reports_zero(db: None) -> None:
    output = _reembed()

    assert "Re-embedded 0 memories and 0 summaries." in output
