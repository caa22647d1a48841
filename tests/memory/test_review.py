"""Review before saving: with "Ask me before remembering" on, what a turn teaches waits.

Pending items are never recalled or put in a prompt (read from the prompts the fake model
received), are answered from the chat notice, the memory page and the API, leave no text when
rejected or expired, go with erasure, and are exported marked pending. With the setting off,
nothing changes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from chat import services as chat_services
from chat.export import export_everything
from chat.models import Conversation, Message
from memory import retention, review
from memory import services as memory_services
from memory.models import Entity, ExtractionRun, Memory, MemoryEvent, PendingMemory
from tests.accounts.test_erasure import _rows_containing
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
CANARY = "wombat-3c9d"
# Where a person's own words stay after a rejection: their conversation (not memory).
TRANSCRIPT = {"chat_message", "chat_conversation"}


def _echo(request: dict[str, Any]) -> str | dict[str, Any]:
    """A model that proposes what it is shown as a fact, and answers chats with 'Noted.'"""
    schema = (request.get("response_format") or {}).get("schema") or {}
    text = request["messages"][-1]["content"]
    if "facts" in schema.get("properties", {}):
        kind = "profile" if text.startswith("I live") else "fact"
        names = [w.strip(".,") for w in text.split() if w[:1].isupper() and w not in ("I", "My")]
        sentences = [s.strip() for s in text.split(". ") if s.strip()]
        return {
            "facts": [{"kind": kind, "content": sentence} for sentence in sentences],
            "entities": [{"name": n, "type": "pet", "attributes": {}} for n in names[:1]],
        }
    if "decisions" in schema.get("properties", {}):
        return {"decisions": []}
    return "Noted."


def _turn(user: Any, conversation: Conversation, text: str) -> Message:
    """One chat turn, streamed to the end, then its extraction run in place."""
    message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=text
    )

    async def run() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(run)()
    chat_services.learn_from_message(message_id=message.pk)
    return message


def _prompt(fake_llm: FakeLLM) -> str:
    """Everything the chat model was sent for the last reply (streamed, unlike extraction)."""
    replies = [r for r in fake_llm.chat_requests if r.get("stream")]
    return json.dumps(replies[-1]["messages"])


@pytest.fixture
def reviewing(user: Any, fake_llm: FakeLLM, settings: Any) -> Any:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _echo
    account_services.set_ask_before_remembering(user=user, enabled=True)
    return user


# --- Pending, not recalled ---


def test_with_review_on_a_turns_facts_wait_and_are_never_recalled_until_approved(
    reviewing: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    said = _turn(user, conversation, "I live in Lisbon.")

    assert not Memory.objects.filter(user=user).exists()
    item = PendingMemory.objects.get(user=user)
    assert (item.operation, item.kind, item.content) == ("add", "profile", "I live in Lisbon.")
    # Its provenance: the message, the conversation, the words, when.
    assert (item.source_message_id, item.source_conversation_id) == (said.pk, conversation.pk)
    assert item.source_excerpt == "I live in Lisbon."
    assert item.expires_at > item.created_at
    assert not MemoryEvent.objects.filter(user=user).exists()
    assert ExtractionRun.objects.get(source_message_id=said.pk).added == 0

    # Not in the next prompt (profile memories always are, when live), not in recall, not in
    # any list or count.
    later = chat_services.start_conversation(user=user)
    _turn(user, later, "Where should I go for dinner tonight?")
    assert "Lisbon" not in _prompt(fake_llm)
    assert memory_services.recall(user=user, query="where do I live in Lisbon").items == []
    assert user_client.get(reverse("api-memories")).json()["count"] == 0
    assert user_client.get(reverse("api-memories"), {"q": "Lisbon"}).json()["count"] == 0
    page = user_client.get(reverse("memory:index")).content.decode()
    assert 'id="group-review"' in page and "I live in Lisbon." in page
    profile = page.split('id="group-profile"')[1].split("</section>")[0]
    assert "Lisbon" not in profile and "Nothing yet." in profile
    assert account_services.erasure_preview(user=user)["memories"] == 0

    response = user_client.post(reverse("api-pending-approve", args=[item.pk]))

    assert response.status_code == 200
    body = response.json()
    assert body["applied"] == "add" and body["memory"]["content"] == "I live in Lisbon."
    memory = Memory.objects.get(user=user)
    assert memory.source_message_id == said.pk and memory.source_excerpt == "I live in Lisbon."
    assert not PendingMemory.objects.filter(user=user).exists()
    _turn(user, later, "Any dinner ideas?")
    assert "I live in Lisbon." in _prompt(fake_llm)


def test_with_review_off_a_turn_is_remembered_at_once_as_before(
    user: Any, user_client: Client, fake_llm: FakeLLM, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    fake_llm.responder = _echo
    assert user.ask_before_remembering is False  # the default
    conversation = chat_services.start_conversation(user=user)
    said = _turn(user, conversation, "I live in Lisbon.")

    assert not PendingMemory.objects.exists()
    memory = Memory.objects.get(user=user)
    assert memory.content == "I live in Lisbon."
    assert MemoryEvent.objects.get(memory_ref=memory.pk).action == "added"
    notice = user_client.get(reverse("memory:learned"), {"message": said.pk}).content.decode()
    assert "Remembered:" in notice and "Remember this?" not in notice
    page = user_client.get(reverse("memory:index")).content.decode()
    assert 'id="group-review"' not in page
    _turn(user, conversation, "Dinner ideas?")
    assert "I live in Lisbon." in _prompt(fake_llm)


# --- The chat notice ---


def test_the_chat_notice_asks_and_yes_remembers(reviewing: Any, user_client: Client) -> None:
    user = reviewing
    said = _turn(user, chat_services.start_conversation(user=user), "I live in Lisbon.")
    item = PendingMemory.objects.get(user=user)

    notice = user_client.get(reverse("memory:learned"), {"message": said.pk}, headers=HTMX)

    html = notice.content.decode()
    assert "Remember this?" in html and "I live in Lisbon." in html
    assert "Remembered:" not in html
    for label in (">Yes<", ">Edit<", ">No<"):
        assert label in html
    response = user_client.post(
        reverse("memory:review-approve", args=[item.pk]), {"from": "chat"}, headers=HTMX
    )
    assert response.status_code == 200
    assert "Remembered:" in response.content.decode()
    assert "memories-changed" in response.headers["HX-Trigger"]
    assert Memory.objects.get(user=user).content == "I live in Lisbon."
    # Answered: the notice, polled again, asks nothing more.
    again = user_client.get(reverse("memory:learned"), {"message": said.pk}).content.decode()
    assert "Remember this?" not in again and "Remembered:" in again


def test_the_chat_notice_edit_then_yes_remembers_my_words(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    _turn(user, chat_services.start_conversation(user=user), "I live in Lisbon.")
    item = PendingMemory.objects.get(user=user)

    form = user_client.get(
        reverse("memory:review-item", args=[item.pk]), {"mode": "edit", "from": "chat"}
    )
    assert form.status_code == 200 and "<textarea" in form.content.decode()
    response = user_client.post(
        reverse("memory:review-approve", args=[item.pk]),
        {"from": "chat", "content": "I live in Lisbon, near the river", "kind": "profile"},
        headers=HTMX,
    )

    assert response.status_code == 200
    assert "I live in Lisbon, near the river" in response.content.decode()
    memory = Memory.objects.get(user=user)
    assert memory.content == "I live in Lisbon, near the river"
    # Edited by the person: their history says so; the provenance stays.
    assert MemoryEvent.objects.get(memory_ref=memory.pk).actor == "user"
    assert memory.source_excerpt == "I live in Lisbon."


def test_an_edit_that_is_a_secret_or_empty_is_refused_and_the_item_keeps_waiting(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    _turn(user, chat_services.start_conversation(user=user), "I live in Lisbon.")
    item = PendingMemory.objects.get(user=user)

    secret = user_client.post(
        reverse("memory:review-approve", args=[item.pk]),
        {"from": "chat", "content": "My password is hunter2-Xy9!"},
        headers=HTMX,
    )
    empty = user_client.post(
        reverse("api-pending-approve", args=[item.pk]), {"content": "   "}, "application/json"
    )

    assert secret.status_code == 400 and "secret" in secret.content.decode()
    assert secret.headers["HX-Retarget"] == f"#pending-{item.pk} .form-error"
    assert empty.status_code == 400
    assert set(empty.json()) == {"detail", "errors"} and "content" in empty.json()["errors"]
    assert PendingMemory.objects.filter(pk=item.pk).exists()
    assert not Memory.objects.filter(user=user).exists()
    assert "hunter2" not in json.dumps(_rows_containing("hunter2"))


def test_no_in_the_chat_leaves_no_text_anywhere(reviewing: Any, user_client: Client) -> None:
    user = reviewing
    said = _turn(
        user, chat_services.start_conversation(user=user), f"My hamster is called {CANARY}."
    )
    assert "memory_pendingmemory" in _rows_containing(CANARY)
    item = PendingMemory.objects.get(user=user)

    response = user_client.post(
        reverse("memory:review-reject", args=[item.pk]), {"from": "chat"}, headers=HTMX
    )

    assert response.status_code == 200 and "Not remembered." in response.content.decode()
    # Only the person's own message (their transcript) holds the words.
    assert set(_rows_containing(CANARY)) <= TRANSCRIPT
    assert not Memory.objects.filter(user=user).exists()
    assert not Entity.objects.filter(user=user).exists()
    assert not MemoryEvent.objects.filter(user=user).exists()
    exported = export_everything(user=user)
    assert exported["pending_memories"] == [] and exported["memories"] == []
    notice = user_client.get(reverse("memory:learned"), {"message": said.pk}).content.decode()
    assert CANARY not in notice


def test_yes_to_all_and_no_to_all_in_the_chat_answer_one_messages_items(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    first = _turn(user, conversation, "I live in Lisbon. I work as a nurse.")
    second = _turn(user, conversation, "I have a cat called Miso.")
    assert PendingMemory.objects.filter(source_message_id=first.pk).count() >= 2
    notice = user_client.get(reverse("memory:learned"), {"message": first.pk}).content.decode()
    assert "Yes to all" in notice

    response = user_client.post(
        reverse("memory:review-all"),
        {"answer": "approve", "from": "chat", "message": str(first.pk)},
        headers=HTMX,
    )

    assert response.status_code == 200
    contents = set(Memory.objects.filter(user=user).values_list("content", flat=True))
    assert {"I live in Lisbon.", "I work as a nurse."} <= contents
    assert "Miso" not in " ".join(contents)
    assert PendingMemory.objects.filter(source_message_id=second.pk).exists()
    user_client.post(
        reverse("memory:review-all"),
        {"answer": "reject", "from": "chat", "message": str(second.pk)},
        headers=HTMX,
    )
    assert not PendingMemory.objects.filter(user=user).exists()
    assert set(_rows_containing("Miso")) <= TRANSCRIPT


# --- Reconciliation shown as what it would change ---


def test_a_new_value_for_a_slot_asks_to_replace_and_yes_replaces_it_with_history(
    reviewing: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    user = reviewing
    old = memory_services.remember(user=user, content="I live in Lisbon.", kind="profile")
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, "I live in Berlin.")

    item = PendingMemory.objects.get(user=user)
    assert (item.operation, item.target_id) == ("update", old.pk)
    old.refresh_from_db()
    assert old.content == "I live in Lisbon."  # unchanged until approved
    page = user_client.get(reverse("memory:index")).content.decode()
    assert (
        'Replace <q class="old">I live in Lisbon.</q> with <q class="new">I live in Berlin.</q>'
        in page
    )
    listed = user_client.get(reverse("api-pending")).json()["results"][0]
    assert listed["question"] == "Replace “I live in Lisbon.” with “I live in Berlin.”?"
    assert listed["target"] == {"id": old.pk, "content": "I live in Lisbon."}
    _turn(user, chat_services.start_conversation(user=user), "Any dinner ideas?")
    assert "Berlin" not in _prompt(fake_llm) and "I live in Lisbon." in _prompt(fake_llm)

    response = user_client.post(
        reverse("memory:review-approve", args=[item.pk]), {"from": "page"}, headers=HTMX
    )

    assert response.status_code == 200
    assert 'id="group-review"' not in response.content.decode()
    old.refresh_from_db()
    assert old.content == "I live in Berlin."  # the same memory, replaced
    update = MemoryEvent.objects.get(memory_ref=old.pk, action="updated")
    assert (update.old_content, update.new_content) == ("I live in Lisbon.", "I live in Berlin.")


def test_approving_an_update_whose_memory_was_edited_since_is_a_409_then_goes_ahead(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    old = memory_services.remember(user=user, content="I live in Lisbon.", kind="profile")
    _turn(user, chat_services.start_conversation(user=user), "I live in Berlin.")
    item = PendingMemory.objects.get(user=user)
    memory_services.update_memory(user=user, memory_id=old.pk, content="I live in Porto.")

    conflict = user_client.post(reverse("api-pending-approve", args=[item.pk]))

    assert conflict.status_code == 409
    assert "I live in Porto." in conflict.json()["detail"]
    assert Memory.objects.get(pk=old.pk).content == "I live in Porto."
    # The item now shows the memory as it reads; approving again applies it.
    shown = user_client.get(reverse("api-pending-item", args=[item.pk])).json()
    assert shown["question"] == "Replace “I live in Porto.” with “I live in Berlin.”?"
    again = user_client.post(reverse("api-pending-approve", args=[item.pk]))
    assert again.status_code == 200 and again.json()["applied"] == "update"
    assert Memory.objects.get(pk=old.pk).content == "I live in Berlin."


def test_approving_an_update_whose_memory_was_deleted_adds_it(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    old = memory_services.remember(user=user, content="I live in Lisbon.", kind="profile")
    _turn(user, chat_services.start_conversation(user=user), "I live in Berlin.")
    item = PendingMemory.objects.get(user=user)
    memory_services.forget(user=user, memory_id=old.pk)
    assert user_client.get(reverse("api-pending-item", args=[item.pk])).json()["applies_as"] == (
        "add"
    )

    response = user_client.post(reverse("api-pending-approve", args=[item.pk]))

    assert response.status_code == 200 and response.json()["applied"] == "add"
    assert list(Memory.objects.filter(user=user).values_list("content", flat=True)) == [
        "I live in Berlin."
    ]


def test_a_repeat_asks_to_confirm_and_yes_confirms_without_a_copy(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    old = memory_services.remember(user=user, content="I live in Lisbon.", kind="profile")
    _turn(user, chat_services.start_conversation(user=user), "I live in Lisbon.")
    item = PendingMemory.objects.get(user=user)
    assert item.operation == "confirm"
    assert review.pending_for(user=user, pending_id=item.pk).question == (
        "You said again “I live in Lisbon.”. Keep it longer?"
    )

    response = user_client.post(reverse("api-pending-approve", args=[item.pk]))

    assert response.json()["applied"] == "confirm"
    old.refresh_from_db()
    assert old.confirmations == 1 and Memory.objects.filter(user=user).count() == 1


def test_an_unreviewed_newer_value_replaces_the_older_unreviewed_one(reviewing: Any) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, "I live in Lisbon.")
    _turn(user, conversation, "I live in Lisbon.")  # said again: not asked twice
    _turn(user, conversation, "I live in Berlin.")

    assert list(PendingMemory.objects.filter(user=user).values_list("content", flat=True)) == [
        "I live in Berlin."
    ]


# --- The page and the API ---


def test_the_page_answers_items_one_by_one_and_all_at_once(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, "I live in Lisbon.")
    _turn(user, conversation, "I have a dog called Bruno.")
    _turn(user, conversation, "I play the cello on Sundays.")
    lisbon, bruno, cello = PendingMemory.objects.filter(user=user).order_by("id")

    page = user_client.get(reverse("memory:index")).content.decode()
    assert "Waiting for review" in page and "Yes to all" in page
    edited = user_client.post(
        reverse("memory:review-approve", args=[bruno.pk]),
        {"from": "page", "content": "I have a beagle called Bruno"},
        headers=HTMX,
    )
    assert edited.status_code == 200 and "I have a beagle called Bruno" in edited.content.decode()
    # The turn's entity is learned with the approved memory that names it.
    entity = Entity.objects.get(user=user, key="bruno")
    assert list(entity.memories.values_list("content", flat=True)) == [
        "I have a beagle called Bruno"
    ]
    rejected = user_client.post(
        reverse("memory:review-reject", args=[cello.pk]), {"from": "page"}, headers=HTMX
    )
    assert rejected.status_code == 200 and "cello" not in rejected.content.decode()
    everything = user_client.post(
        reverse("memory:review-all"), {"answer": "approve", "from": "page"}, headers=HTMX
    )
    assert everything.status_code == 200
    assert 'id="group-review"' not in everything.content.decode()
    assert set(Memory.objects.filter(user=user).values_list("content", flat=True)) == {
        "I live in Lisbon.", "I have a beagle called Bruno",
    }  # fmt: skip
    assert set(_rows_containing("cello")) <= TRANSCRIPT
    assert lisbon.pk not in PendingMemory.objects.values_list("pk", flat=True)


def test_the_api_lists_pages_and_answers_only_my_items(
    reviewing: Any, other_user: Any, user_client: Client
) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    said = _turn(user, conversation, "I live in Lisbon.")
    _turn(user, conversation, "I have a dog called Bruno.")
    account_services.set_ask_before_remembering(user=other_user, enabled=True)
    theirs = _turn(other_user, chat_services.start_conversation(user=other_user), "I live in Oslo.")
    their_item = PendingMemory.objects.get(source_message_id=theirs.pk)

    listed = user_client.get(reverse("api-pending"), {"limit": 1}).json()
    assert listed["count"] == 2 and len(listed["results"]) == 1 and listed["next"]
    first = listed["results"][0]
    assert first["operation"] == "add" and first["content"] == "I live in Lisbon."
    assert first["provenance"]["message_id"] == said.pk
    assert first["provenance"]["excerpt"] == "I live in Lisbon."
    only = user_client.get(reverse("api-pending"), {"message": said.pk}).json()
    assert [r["content"] for r in only["results"]] == ["I live in Lisbon."]
    assert user_client.get(reverse("api-pending"), {"message": "x"}).status_code == 400
    assert user_client.get(reverse("api-pending"), {"limit": "0"}).status_code == 400
    # Someone else's item is not found, whatever is asked of it.
    for method, name in (
        ("get", "api-pending-item"), ("post", "api-pending-approve"),
        ("post", "api-pending-reject"), ("delete", "api-pending-item"),
    ):  # fmt: skip
        response = getattr(user_client, method)(reverse(name, args=[their_item.pk]))
        assert response.status_code == 404, (method, name)
        assert "Oslo" not in response.content.decode()
    assert PendingMemory.objects.filter(pk=their_item.pk).exists()

    rejected = user_client.post(
        reverse("api-pending-reject-all"), {"message_id": said.pk}, "application/json"
    )
    assert rejected.json() == {"rejected": 1}
    approved = user_client.post(reverse("api-pending-approve-all"), {}, "application/json")
    assert approved.status_code == 200
    assert [a["memory"]["content"] for a in approved.json()["approved"]] == [
        "I have a dog called Bruno."
    ]
    assert approved.json()["conflicts"] == {}
    assert user_client.get(reverse("api-pending")).json()["count"] == 0
    assert PendingMemory.objects.filter(pk=their_item.pk).exists()
    bad = user_client.post(
        reverse("api-pending-approve-all"), {"message_id": "x"}, "application/json"
    )
    assert bad.status_code == 400 and set(bad.json()) == {"detail", "errors"}


def test_the_setting_is_on_the_memory_page_the_account_page_the_api_and_the_export(
    user: Any, user_client: Client
) -> None:
    page = user_client.get(reverse("memory:index")).content.decode()
    assert "Ask me before remembering: off" in page
    account = user_client.get(reverse("accounts:account")).content.decode()
    assert "“Ask me before remembering” is off: Mnemo remembers without asking." in account
    assert user_client.get(reverse("api-settings")).json() == {
        "memory_enabled": True, "ask_before_remembering": False,
    }  # fmt: skip

    switched = user_client.post(
        reverse("memory:review-settings"), {"enabled": "true"}, headers=HTMX
    )
    assert (
        switched.status_code == 200 and "Ask me before remembering: on" in switched.content.decode()
    )
    user.refresh_from_db()
    assert user.ask_before_remembering is True
    # From the account page (no htmx): back to the account page.
    back = user_client.post(
        reverse("memory:review-settings"), {"enabled": "false", "next": "/account/"}
    )
    assert back.status_code == 302 and back.headers["Location"] == "/account/"
    away = user_client.post(
        reverse("memory:review-settings"), {"enabled": "false", "next": "https://evil.example/"}
    )
    assert away.headers["Location"] == reverse("memory:index")
    put = user_client.put(
        reverse("api-settings"),
        {"memory_enabled": True, "ask_before_remembering": True},
        "application/json",
    )
    assert put.json()["ask_before_remembering"] is True
    # Leaving it out keeps it; a non-boolean is a 400.
    kept = user_client.put(reverse("api-settings"), {"memory_enabled": True}, "application/json")
    assert kept.json()["ask_before_remembering"] is True
    wrong = user_client.put(
        reverse("api-settings"),
        {"memory_enabled": True, "ask_before_remembering": "yes"},
        "application/json",
    )
    assert wrong.status_code == 400
    assert user_client.get(reverse("api-account")).json()["ask_before_remembering"] is True
    assert export_everything(user=user)["profile"]["ask_before_remembering"] is True


# --- Expiry, erasure, export ---


def test_pending_items_expire_unread_and_the_sweep_leaves_no_text(
    reviewing: Any, user_client: Client, settings: Any
) -> None:
    user = reviewing
    settings.MEMORY_REVIEW_TTL_HOURS = 2
    _turn(user, chat_services.start_conversation(user=user), f"My hamster is called {CANARY}.")
    item = PendingMemory.objects.get(user=user)
    assert item.expires_at == item.created_at + timedelta(hours=2)

    # Its time passes (set in the database, whose clock decides).
    PendingMemory.objects.filter(pk=item.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    # Past its time it is no longer offered, even before the sweep removes it.
    assert user_client.get(reverse("api-pending")).json()["count"] == 0
    assert user_client.post(reverse("api-pending-approve", args=[item.pk])).status_code == 404
    assert "Waiting for review" not in user_client.get(reverse("memory:index")).content.decode()
    run = retention.run_retention()

    assert run.expired.get("pending review") == 1
    assert not PendingMemory.objects.filter(user=user).exists()
    assert set(_rows_containing(CANARY)) <= TRANSCRIPT
    assert not Memory.objects.filter(user=user).exists()


def test_forget_everything_and_account_erasure_take_pending_items(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    _turn(user, chat_services.start_conversation(user=user), f"My hamster is called {CANARY}.")
    assert PendingMemory.objects.filter(user=user).exists()
    assert account_services.erasure_preview(user=user)["memories waiting for review"] == 1

    user_client.post(reverse("memory:forget-all"), {"confirm": "forget everything"})
    assert not PendingMemory.objects.filter(user=user).exists()

    _turn(user, chat_services.start_conversation(user=user), f"My parrot is called {CANARY}.")
    assert PendingMemory.objects.filter(user=user).exists()
    receipt = account_services.erase_account(user=user)
    assert receipt.counts["memories waiting for review"] == 1
    assert _rows_containing(CANARY) == {}


def test_the_export_holds_pending_items_marked_pending_with_their_provenance(
    reviewing: Any,
) -> None:
    user = reviewing
    said = _turn(user, chat_services.start_conversation(user=user), "I live in Lisbon.")

    exported = export_everything(user=user)

    assert exported["memories"] == []
    (pending,) = exported["pending_memories"]
    assert pending["status"] == "pending" and pending["operation"] == "add"
    assert pending["content"] == "I live in Lisbon."
    assert pending["source"]["message_id"] == said.pk
    assert pending["expires_at"]


def test_deleting_the_conversation_keeps_the_item_without_its_words(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, f"My hamster is called {CANARY}. I live in Lisbon.")
    lisbon = PendingMemory.objects.get(user=user, content="I live in Lisbon.")
    PendingMemory.objects.filter(user=user).exclude(pk=lisbon.pk).delete()

    user_client.post(reverse("chat:delete", args=[conversation.pk]))

    lisbon.refresh_from_db()
    assert lisbon.source_deleted and lisbon.source_excerpt == ""
    assert (lisbon.source_message_id, lisbon.source_conversation_id) == (None, None)
    assert _rows_containing(CANARY) == {}


def test_with_review_on_no_summary_carries_the_conversation_into_later_prompts(
    reviewing: Any, fake_llm: FakeLLM
) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, f"My hamster is called {CANARY}.")
    _turn(user, conversation, "What should I feed him?")

    assert chat_services.summarize_conversation(conversation_id=conversation.pk) is False
    assert conversation.pk not in chat_services.conversations_to_summarize(
        idle=timedelta(0), every=1
    )
    _turn(user, chat_services.start_conversation(user=user), "What is my hamster called?")
    assert CANARY not in _prompt(fake_llm)
    # With the setting off again, summaries resume.
    account_services.set_ask_before_remembering(user=user, enabled=False)
    assert conversation.pk in chat_services.conversations_to_summarize(idle=timedelta(0), every=1)


def test_forgetting_a_memory_drops_the_pending_repeat_of_its_words(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    memory = memory_services.remember(user=user, content=f"My hamster is called {CANARY}.")
    _turn(user, chat_services.start_conversation(user=user), f"My hamster is called {CANARY}.")
    assert PendingMemory.objects.get(user=user).operation == "confirm"

    user_client.post(reverse("memory:delete", args=[memory.pk]))

    assert not PendingMemory.objects.filter(user=user).exists()
    assert set(_rows_containing(CANARY)) <= TRANSCRIPT


def test_yes_to_all_on_the_page_says_which_memory_changed_meanwhile(
    reviewing: Any, user_client: Client
) -> None:
    user = reviewing
    old = memory_services.remember(user=user, content="I live in Lisbon.", kind="profile")
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, "I live in Berlin.")
    _turn(user, conversation, "I have a dog called Bruno.")
    memory_services.update_memory(user=user, memory_id=old.pk, content="I live in Porto.")

    response = user_client.post(
        reverse("memory:review-all"), {"answer": "approve", "from": "page"}, headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "it now says “I live in Porto.”" in html
    # The other was applied; the changed one still waits, shown against the current text.
    assert Memory.objects.filter(user=user, content="I have a dog called Bruno.").exists()
    assert 'Replace <q class="old">I live in Porto.</q>' in html


def test_what_do_you_know_lists_live_memories_and_only_counts_what_waits(
    reviewing: Any,
) -> None:
    user = reviewing
    memory_services.remember(user=user, content="I prefer green tea.", kind="preference")
    conversation = chat_services.start_conversation(user=user)
    _turn(user, conversation, f"My hamster is called {CANARY}.")

    _turn(user, conversation, "What do you know about me?")

    reply = Message.objects.filter(conversation=conversation, role="assistant").last()
    assert reply is not None
    assert "- I prefer green tea." in reply.content
    assert "1 more waits for your yes" in reply.content
    assert CANARY not in reply.content


# --- One message, two items: rejecting one leaves its words in no other's quote ---


def _reject_on_the_page(client: Client, item: PendingMemory) -> None:
    response = client.post(reverse("memory:review-reject", args=[item.pk]), {"from": "chat"})
    assert response.status_code in (200, 302)


def _reject_through_the_api(client: Client, item: PendingMemory) -> None:
    assert client.delete(reverse("api-pending-item", args=[item.pk])).status_code == 204


def _let_it_expire(client: Client, item: PendingMemory) -> None:
    PendingMemory.objects.filter(pk=item.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert retention.run_retention().expired.get("pending review") == 1


REJECT_PATHS = [_reject_on_the_page, _reject_through_the_api, _let_it_expire]


@pytest.mark.parametrize("whole", [False, True], ids=["own-sentence", "written-whole"])
@pytest.mark.parametrize("reject", REJECT_PATHS, ids=lambda f: f.__name__.strip("_"))
def test_rejecting_one_item_of_a_message_and_approving_the_other_leaves_it_only_in_the_chat(
    reviewing: Any, user_client: Client, reject: Any, whole: bool
) -> None:
    user = reviewing
    said = f"I live in Lisbon. My hamster is called {CANARY}."
    message = _turn(user, chat_services.start_conversation(user=user), said)
    items = PendingMemory.objects.filter(user=user, source_message_id=message.pk)
    lisbon = items.get(content__contains="Lisbon")
    hamster = items.get(content__contains=CANARY)
    assert lisbon.source_excerpt == "I live in Lisbon."
    assert hamster.source_excerpt == f"My hamster is called {CANARY}."
    if whole:  # as items held before quotes were cut to their sentences
        items.update(source_excerpt=said)

    reject(user_client, hamster)
    # Already while the other waits, its quote keeps only its own sentence.
    lisbon.refresh_from_db()
    assert lisbon.source_excerpt == "I live in Lisbon."
    assert set(_rows_containing(CANARY)) <= TRANSCRIPT
    approved = user_client.post(reverse("api-pending-approve", args=[lisbon.pk]))

    assert approved.status_code == 200
    memory = Memory.objects.get(user=user)
    assert (memory.source_excerpt, memory.source_message_id) == ("I live in Lisbon.", message.pk)
    assert set(_rows_containing(CANARY)) <= TRANSCRIPT
    exported = export_everything(user=user)
    assert CANARY not in json.dumps([exported["memories"], exported["pending_memories"]])


def test_the_chat_page_asks_again_after_a_reload_under_the_reply_and_yes_works(
    reviewing: Any, user_client: Client, other_user: Any, fake_llm: FakeLLM
) -> None:
    user = reviewing
    conversation = chat_services.start_conversation(user=user)
    said = _turn(user, conversation, "I live in Lisbon. My cat is called Miso.")
    answered = _turn(user, conversation, "I work as a nurse.")
    elsewhere = _turn(user, chat_services.start_conversation(user=user), "I keep bees.")
    account_services.set_ask_before_remembering(user=other_user, enabled=True)
    theirs = _turn(other_user, chat_services.start_conversation(user=other_user), "I live in Oslo.")
    # One item already answered in the streamed notice: it is not asked again.
    review.reject(user=user, pending_id=PendingMemory.objects.get(content="I work as a nurse.").pk)
    lisbon, miso = PendingMemory.objects.filter(source_message_id=said.pk).order_by("id")
    reply = Message.objects.get(
        conversation=conversation,
        role="assistant",
        created_at__gt=said.created_at,
        created_at__lt=answered.created_at,
    )

    page = user_client.get(reverse("chat:conversation", args=[conversation.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    # Server-rendered, under the reply to the message it came from, as the streamed notice.
    start = html.index(f'id="message-{reply.pk}"')
    notice = html[start : html.index('<article id="message-', start)]
    assert f'id="learned-{said.pk}"' in notice and f'id="review-{said.pk}"' in notice
    for item in (lisbon, miso):
        assert f'id="pending-{item.pk}"' in notice
        assert reverse("memory:review-approve", args=[item.pk]) in notice
    assert "Remember this?" in notice and "I live in Lisbon." in notice and "All 2:" in notice
    # Nothing answered, from another conversation, or of another person.
    others = PendingMemory.objects.filter(source_message_id__in=[elsewhere.pk, theirs.pk])
    assert others.count() == 2
    for other in others:
        assert f'id="pending-{other.pk}"' not in html
    assert f'id="learned-{answered.pk}"' not in html
    assert html.count("Remember this?") == 2 and html.count('class="review-notice"') == 1

    # The reloaded notice answers as the streamed one: Yes remembers, the next load asks less.
    response = user_client.post(
        reverse("memory:review-approve", args=[lisbon.pk]), {"from": "chat"}, headers=HTMX
    )
    assert response.status_code == 200 and "Remembered:" in response.content.decode()
    again = user_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert again.count("Remember this?") == 1 and f'id="pending-{miso.pk}"' in again
    assert f'id="pending-{lisbon.pk}"' not in again
    # An incognito chat has nothing waiting, and its page asks nothing.
    incognito = chat_services.start_conversation(user=user, incognito=True)
    _turn(user, incognito, "I live in Porto.")
    quiet = user_client.get(reverse("chat:conversation", args=[incognito.pk])).content.decode()
    assert "Remember this?" not in quiet


def test_the_api_export_holds_pending_items_and_each_memorys_pinned_and_local_only_flags(
    reviewing: Any, user_client: Client
) -> None:
    from memory import exposure

    user = reviewing
    said = _turn(user, chat_services.start_conversation(user=user), "I live in Lisbon.")
    kept = memory_services.remember(user=user, content="I take insulin every morning")
    memory_services.set_pinned(user=user, memory_id=kept.pk, pinned=True)
    exposure.set_memory_local_only(user=user, memory_id=kept.pk, local_only=True)
    loose = memory_services.remember(user=user, content="I like jazz")

    response = user_client.get(reverse("api-export"))

    assert response.status_code == 200
    data = response.json()
    (pending,) = data["pending_memories"]
    assert (pending["status"], pending["content"]) == ("pending", "I live in Lisbon.")
    assert pending["source"]["message_id"] == said.pk
    flags = {
        m["id"]: (m["pinned"], m["local_only_setting"], m["local_only"]) for m in data["memories"]
    }
    assert flags == {kept.pk: (True, True, True), loose.pk: (False, None, False)}
    assert data["profile"]["ask_before_remembering"] is True
