"""Two model endpoints, one local and one hosted: local-only memories reach only the local one.

The default endpoint is the session's fake LLM (a loopback address: local); the hosted one is
a second fake server marked `local=false`. What each server received is read from its own
request log, so "never in the hosted one's prompt" is checked on what actually went over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chat import services
from chat.models import Conversation, Message
from memory import exposure
from memory import services as memory_services
from memory.models import ExtractionRun, Memory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

HOSTED_KEY = "sk-hosted-test-key-0123456789"


@pytest.fixture(scope="module")
def _hosted_server() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def hosted(_hosted_server: FakeLLM, settings: Any, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    """A second endpoint, `hosted`, on its own fake server, marked not local."""
    _hosted_server.reset()
    monkeypatch.setenv("HOSTED_TEST_API_KEY", HOSTED_KEY)
    settings.LLM_LOCAL = "true"
    settings.LLM_EXTRA_ENDPOINTS = [
        {
            "name": "hosted",
            "label": "Hosted GPT",
            "base_url": _hosted_server.base_url,
            "model": "hosted-chat",
            "api_key_env": "HOSTED_TEST_API_KEY",
            "local": False,
            "layout": "large",
        }
    ]
    return _hosted_server


def prompt_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request["messages"])


def all_text(fake: FakeLLM) -> str:
    return "\n".join(prompt_text(r) for r in fake.chat_requests)


def remember_health_and_name(user: Any) -> tuple[Memory, Memory]:
    allergy = memory_services.remember(
        user=user, content="I am allergic to peanuts", kind=Memory.Kind.PROFILE
    )
    name = memory_services.remember(user=user, content="My name is Ana", kind=Memory.Kind.PROFILE)
    return allergy, name


# --- Chat ---


def test_a_local_only_memory_reaches_the_local_endpoint_and_never_the_hosted_one(
    user: Any, fake_llm: FakeLLM, hosted: FakeLLM
) -> None:
    remember_health_and_name(user)
    local_chat = services.start_conversation(user=user)
    hosted_chat = services.start_conversation(user=user, endpoint="hosted")

    _, local_reply = services.reply_to(
        user=user, conversation_id=local_chat.pk, content="What should I cook tonight?"
    )
    _, hosted_reply = services.reply_to(
        user=user, conversation_id=hosted_chat.pk, content="What should I cook tonight?"
    )

    local_prompt = prompt_text(fake_llm.chat_requests[-1])
    assert "peanuts" in local_prompt and "Ana" in local_prompt
    assert len(hosted.chat_requests) == 1
    hosted_request = hosted.chat_requests[0]
    assert hosted_request["model"] == "hosted-chat"
    assert "Ana" in prompt_text(hosted_request)
    assert "peanuts" not in prompt_text(hosted_request)
    # The hosted endpoint got its own key, read from the variable its configuration names.
    assert hosted.requests[-1].headers["authorization"] == f"Bearer {HOSTED_KEY}"

    # The recall record says what was held back, and why; the local reply held back nothing.
    assert hosted_reply.recall["held_back"]["count"] == 1
    assert hosted_reply.recall["held_back"]["text"] == "1 memory kept local: health"
    assert "held_back" not in local_reply.recall
    held = [i for i in hosted_reply.recall["items"] if i.get("held_back")]
    assert [i["held_back"] for i in held] == ["health"] and not held[0]["included"]
    assert hosted_reply.endpoint == "hosted" and hosted_reply.model == "hosted-chat"
    assert local_reply.endpoint == "default"


def test_memories_kept_local_by_kind_or_by_hand_are_held_back_with_their_reasons(
    user: Any, fake_llm: FakeLLM, hosted: FakeLLM
) -> None:
    remember_health_and_name(user)
    marked = memory_services.remember(
        user=user, content="I prefer short answers", kind=Memory.Kind.PREFERENCE
    )
    exposure.set_memory_local_only(user=user, memory_id=marked.pk, local_only=True)
    exposure.set_rules(user=user, local_only={"profile": True, "health": False})
    conversation = services.start_conversation(user=user, endpoint="hosted")
    _, reply = services.reply_to(user=user, conversation_id=conversation.pk, content="Hi there")

    prompt = prompt_text(hosted.chat_requests[-1])
    assert "peanuts" not in prompt and "Ana" not in prompt and "short answers" not in prompt
    assert reply.recall["held_back"]["count"] == 3
    assert reply.recall["held_back"]["reasons"] == {"profiles": 2, "marked by you": 1}
    assert reply.recall["held_back"]["text"] == "3 memories kept local: profiles, marked by you"
    assert not reply.memories_used.exists()

    # Let one go to any model, whatever the rules: it is in the next hosted prompt.
    allergy = Memory.objects.get(user=user, content__contains="peanuts")
    exposure.set_memory_local_only(user=user, memory_id=allergy.pk, local_only=False)
    services.reply_to(user=user, conversation_id=conversation.pk, content="Hi again")
    assert "peanuts" in prompt_text(hosted.chat_requests[-1])


def test_turns_said_to_the_local_endpoint_stay_out_of_a_hosted_prompt_after_a_switch(
    user: Any, fake_llm: FakeLLM, hosted: FakeLLM
) -> None:
    conversation = services.start_conversation(user=user)
    services.reply_to(
        user=user, conversation_id=conversation.pk, content="My neighbour Tom is very loud."
    )
    services.set_conversation_endpoint(
        user=user, conversation_id=conversation.pk, endpoint="hosted"
    )
    services.reply_to(user=user, conversation_id=conversation.pk, content="Recommend a film.")
    hosted_prompt = prompt_text(hosted.chat_requests[-1])
    assert "Recommend a film." in hosted_prompt
    assert "Tom" not in hosted_prompt and fake_llm.chat_requests
    # Back on the local endpoint, the whole conversation is there again.
    services.set_conversation_endpoint(user=user, conversation_id=conversation.pk, endpoint="")
    services.reply_to(user=user, conversation_id=conversation.pk, content="And a book?")
    local_prompt = prompt_text(fake_llm.chat_requests[-1])
    assert "Tom" in local_prompt and "Recommend a film." in local_prompt


def test_a_removed_endpoint_falls_back_to_the_default_and_its_text_counts_as_local(
    user: Any, fake_llm: FakeLLM, hosted: FakeLLM, settings: Any
) -> None:
    conversation = services.start_conversation(user=user, endpoint="hosted")
    services.reply_to(user=user, conversation_id=conversation.pk, content="Hello there")
    settings.LLM_EXTRA_ENDPOINTS = []  # the operator removed it
    conversation.refresh_from_db()
    assert exposure.for_conversation(conversation).name == "default"
    _, reply = services.reply_to(user=user, conversation_id=conversation.pk, content="Still here?")
    assert reply.status == Message.Status.COMPLETE and reply.endpoint == "default"
    assert "Still here?" in prompt_text(fake_llm.chat_requests[-1])


# --- Extraction ---


@pytest.fixture
def hosted_background(hosted: FakeLLM, settings: Any) -> FakeLLM:
    """Background work goes to the hosted endpoint unless the rules send it to a local one.

    Every statement with a neighbour goes to the model, so reconciliation prompts are seen.
    """
    settings.LLM_BACKGROUND_ENDPOINT = "hosted"
    settings.MEMORY_NEW_SIMILARITY = 0.0
    settings.MEMORY_DUPLICATE_SIMILARITY = 0.999
    return hosted


def said(user: Any, conversation: Conversation, text: str) -> Message:
    return Message.objects.create(
        user=user,
        conversation=conversation,
        role=Message.Role.USER,
        content=text,
        endpoint=conversation.endpoint or "default",
    )


def test_a_hosted_background_model_never_sees_a_local_only_memory_in_reconciliation(
    user: Any, fake_llm: FakeLLM, hosted_background: FakeLLM
) -> None:
    memory_services.remember(user=user, content="I take insulin every morning")
    memory_services.remember(user=user, content="I like hiking in the Alps")
    conversation = services.start_conversation(user=user, endpoint="hosted")
    message = said(user, conversation, "I enjoy long walks with my dog Bruno.")

    run = services.learn_from_message(message_id=message.pk)

    assert run is not None and run.status == ExtractionRun.Status.DONE
    hosted_text = all_text(hosted_background)
    assert "Bruno" in hosted_text  # the message's own extraction went to the hosted model
    assert "insulin" not in hosted_text
    # The reconciliation that lists the local-only memory was asked of the local model.
    decisions = [r for r in fake_llm.chat_requests if "existing memory" in prompt_text(r)]
    assert decisions and "insulin" in prompt_text(decisions[0])


def test_without_a_local_endpoint_local_only_memories_are_left_out_of_reconciliation(
    user: Any, fake_llm: FakeLLM, hosted_background: FakeLLM, settings: Any
) -> None:
    settings.LLM_LOCAL = "false"  # nothing is local now
    memory_services.remember(user=user, content="I take insulin every morning")
    memory_services.remember(user=user, content="I like hiking in the Alps")
    conversation = services.start_conversation(user=user, endpoint="hosted")
    message = said(user, conversation, "I enjoy long walks with my dog Bruno.")

    services.learn_from_message(message_id=message.pk)

    decisions = [r for r in hosted_background.chat_requests if "existing memory" in prompt_text(r)]
    assert decisions and "hiking" in prompt_text(decisions[0])
    assert "insulin" not in all_text(hosted_background)
    assert not fake_llm.chat_requests


def test_what_is_said_to_the_local_endpoint_is_extracted_by_the_local_model_only(
    user: Any, fake_llm: FakeLLM, hosted_background: FakeLLM
) -> None:
    conversation = services.start_conversation(user=user)
    message = said(user, conversation, "I live in Porto and I work as a nurse.")
    fake_llm.reply_json({"facts": [{"kind": "profile", "content": "I work as a nurse"}]})

    services.learn_from_message(message_id=message.pk)

    assert not hosted_background.chat_requests
    assert "Porto" in prompt_text(fake_llm.chat_requests[0])
    assert Memory.objects.filter(user=user, content__icontains="nurse").exists()


def test_health_said_on_a_hosted_conversation_is_extracted_locally(
    user: Any, fake_llm: FakeLLM, hosted_background: FakeLLM
) -> None:
    conversation = services.start_conversation(user=user, endpoint="hosted")
    message = said(user, conversation, "I was diagnosed with asthma last year.")
    services.learn_from_message(message_id=message.pk)
    assert not hosted_background.chat_requests
    assert "asthma" in all_text(fake_llm)


def test_with_no_local_model_local_text_is_learned_only_by_the_deterministic_extractor(
    user: Any, fake_llm: FakeLLM, hosted_background: FakeLLM, settings: Any
) -> None:
    settings.LLM_LOCAL = "false"
    conversation = services.start_conversation(user=user, endpoint="hosted")
    message = said(user, conversation, "I am allergic to shellfish.")
    run = services.learn_from_message(message_id=message.pk)
    assert run is not None and run.llm_calls == 0
    assert not hosted_background.chat_requests and not fake_llm.chat_requests
    learned = Memory.objects.get(user=user)
    assert "shellfish" in learned.content
    assert exposure.memory_reason(learned, exposure.rules_for(user=user)) == "health"


# --- Summaries and titles ---


def exchange(user: Any, conversation: Conversation, text: str, answer: str) -> None:
    name = conversation.endpoint or "default"
    Message.objects.create(
        user=user, conversation=conversation, role="user", content=text, endpoint=name
    )
    Message.objects.create(
        user=user, conversation=conversation, role="assistant", content=answer, endpoint=name
    )


def test_summaries_go_to_a_local_model_when_the_conversation_or_its_content_is_local(
    user: Any, fake_llm: FakeLLM, hosted_background: FakeLLM
) -> None:
    on_hosted = services.start_conversation(user=user, endpoint="hosted")
    exchange(user, on_hosted, "Plan a weekend in Rome for me.", "Sure: day one, the Forum.")
    hosted_background.reply("I planned a weekend in Rome.")
    assert services.summarize_conversation(conversation_id=on_hosted.pk)
    assert "Rome" in all_text(hosted_background) and not fake_llm.chat_requests

    on_local = services.start_conversation(user=user)
    exchange(user, on_local, "My sister Lea visits in June.", "How nice!")
    fake_llm.reply("My sister Lea visits in June.")
    assert services.summarize_conversation(conversation_id=on_local.pk)
    assert "Lea" in all_text(fake_llm) and "Lea" not in all_text(hosted_background)

    health = services.start_conversation(user=user, endpoint="hosted")
    exchange(user, health, "My migraine medication makes me sleepy.", "Talk to your doctor.")
    fake_llm.reply("I said my migraine medication makes me sleepy.")
    assert services.summarize_conversation(conversation_id=health.pk)
    assert "migraine" in all_text(fake_llm) and "migraine" not in all_text(hosted_background)


def test_a_health_summary_is_recalled_on_the_local_endpoint_only(
    user: Any, fake_llm: FakeLLM, hosted: FakeLLM
) -> None:
    earlier = services.start_conversation(user=user)
    exchange(user, earlier, "My migraine medication makes me sleepy.", "Talk to your doctor.")
    fake_llm.reply("I said my migraine medication makes me sleepy.")
    assert services.summarize_conversation(conversation_id=earlier.pk)

    question = "Why am I sleepy? Is it my migraine medication?"
    on_hosted = services.start_conversation(user=user, endpoint="hosted")
    _, reply = services.reply_to(user=user, conversation_id=on_hosted.pk, content=question)
    assert "sleepy" not in prompt_text(hosted.chat_requests[-1]).replace(question, "")
    assert reply.recall["held_back"]["reasons"] == {"health": 1}

    on_local = services.start_conversation(user=user)
    services.reply_to(user=user, conversation_id=on_local.pk, content=question)
    assert "makes me sleepy" in prompt_text(fake_llm.chat_requests[-1]).replace(question, "")


def test_a_title_for_a_local_conversation_is_written_by_a_local_model(
    user: Any, fake_llm: FakeLLM, hosted_background: FakeLLM
) -> None:
    conversation = services.start_conversation(user=user)
    said(user, conversation, "Help me plan my garden beds")
    fake_llm.reply("Garden planning")
    assert services.generate_title(conversation_id=conversation.pk) == "Garden planning"
    assert not hosted_background.chat_requests


# --- Configuration ---


def test_no_api_key_is_stored_or_exported(
    user: Any, fake_llm: FakeLLM, hosted: FakeLLM, settings: Any
) -> None:
    from chat.export import export_everything

    conversation = services.start_conversation(user=user, endpoint="hosted")
    services.reply_to(user=user, conversation_id=conversation.pk, content="Hello")
    exported = json.dumps(export_everything(user=user))
    assert HOSTED_KEY not in exported
    assert '"endpoint": "hosted"' in exported
    assert HOSTED_KEY not in repr(settings.LLM_EXTRA_ENDPOINTS)
    from config import endpoints

    assert HOSTED_KEY not in repr(endpoints.all_endpoints())


def test_a_summary_of_a_conversation_with_a_local_only_memory_stays_local(
    user: Any, fake_llm: FakeLLM, hosted: FakeLLM
) -> None:
    earlier = services.start_conversation(user=user)
    exchange(user, earlier, "My salary is eighty thousand a year.", "Thanks for telling me.")
    salary = memory_services.remember(
        user=user,
        content="My salary is eighty thousand a year",
        source_conversation_id=earlier.pk,
    )
    exposure.set_memory_local_only(user=user, memory_id=salary.pk, local_only=True)
    fake_llm.reply("I said my salary is eighty thousand a year.")
    assert services.summarize_conversation(conversation_id=earlier.pk)

    question = "What is my salary per year?"
    on_hosted = services.start_conversation(user=user, endpoint="hosted")
    _, reply = services.reply_to(user=user, conversation_id=on_hosted.pk, content=question)
    assert "eighty" not in prompt_text(hosted.chat_requests[-1])
    held = {(i["source"], i["held_back"]) for i in reply.recall["items"] if i.get("held_back")}
    assert ("summary", "marked") in held and ("memory", "marked") in held

    on_local = services.start_conversation(user=user)
    services.reply_to(user=user, conversation_id=on_local.pk, content=question)
    assert "I said my salary is eighty thousand" in prompt_text(fake_llm.chat_requests[-1])
