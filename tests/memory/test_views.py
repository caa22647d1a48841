"""The "What I know about you" page and its htmx fragments, and the memory bits of the chat."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from chat import services as chat_services
from chat.models import Conversation, Message
from memory import entities, services
from memory.models import ConversationSummary, ExtractionRun, Memory, MemoryEvent
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _remember(user: Any, content: str, kind: str = Memory.Kind.FACT, **extra: Any) -> Memory:
    return services.remember(user=user, content=content, kind=kind, **extra)


def _said(user: Any, conversation: Conversation, text: str) -> Message:
    return Message.objects.create(
        user=user, conversation=conversation, role=Message.Role.USER, content=text
    )


def _learned_from_message(user: Any, text: str, facts: list[tuple[str, str]]) -> Message:
    """A message of the person and what extraction took from it (its run and added events)."""
    conversation = chat_services.start_conversation(user=user)
    message = _said(user, conversation, text)
    for kind, content in facts:
        _remember(
            user,
            content,
            kind,
            actor=MemoryEvent.Actor.EXTRACTOR,
            source_message_id=message.pk,
            source_conversation_id=conversation.pk,
            source_excerpt=text,
        )
    ExtractionRun.objects.create(
        user=user, source_message_id=message.pk, status=ExtractionRun.Status.DONE, added=len(facts)
    )
    return message


def _summary(user: Any, content: str) -> ConversationSummary:
    conversation = chat_services.start_conversation(user=user, title="Trip planning")
    return services.save_summary(
        user=user,
        conversation_id=conversation.pk,
        conversation_title=conversation.title,
        content=content,
        last_message_id=0,
        message_count=4,
    )


def _group(html: str, kind: str) -> str:
    match = re.search(
        rf'<section class="memory-group" id="group-{kind}">(.*?)</section>', html, re.S
    )
    assert match, f"no {kind} group"
    return match.group(1)


def _count(group_html: str) -> int:
    match = re.search(r'<span class="count">(\d+)</span>', group_html)
    assert match
    return int(match.group(1))


# --- The page ---


def test_the_page_groups_my_memories_by_kind_with_counts(
    user: Any, other_user: Any, user_client: Client
) -> None:
    _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    _remember(user, "I love hiking", Memory.Kind.PREFERENCE)
    _remember(user, "I prefer metric units", Memory.Kind.PREFERENCE)
    _remember(user, "I am writing a novel", Memory.Kind.TASK)
    _remember(other_user, "I live in Oslo", Memory.Kind.PROFILE)
    _summary(user, "I planned a walk along the Tagus.")

    response = user_client.get(reverse("memory:index"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "What I know about you" in html
    assert (_count(_group(html, "profile")), _count(_group(html, "preference"))) == (1, 2)
    assert (_count(_group(html, "fact")), _count(_group(html, "task"))) == (0, 1)
    assert "I live in Lisbon" in _group(html, "profile")
    assert "I love hiking" in _group(html, "preference")
    assert "I prefer metric units" in _group(html, "preference")
    assert "Nothing yet." in _group(html, "fact")
    assert "I am writing a novel" in _group(html, "task")
    assert _count(_group(html, "summaries")) == 1
    assert "I planned a walk along the Tagus." in html
    assert "Oslo" not in html


def test_the_page_links_a_memory_to_the_message_it_was_learned_from(
    user: Any, user_client: Client
) -> None:
    message = _learned_from_message(user, "I live in Lisbon.", [("profile", "I live in Lisbon")])
    _remember(user, "I love hiking", Memory.Kind.PREFERENCE)

    html = user_client.get(reverse("memory:index")).content.decode()

    link = f'href="/chat/c/{message.conversation_id}/#message-{message.pk}"'
    assert link in _group(html, "profile")
    assert "Learned from" in _group(html, "profile")
    assert 'title="You said: I live in Lisbon."' in _group(html, "profile")
    assert "Added by you" in _group(html, "preference")


def test_a_pinned_memory_never_expires_on_the_page(user: Any, user_client: Client) -> None:
    pinned = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    services.set_pinned(user=user, memory_id=pinned.pk, pinned=True)
    _remember(user, "I love hiking", Memory.Kind.PREFERENCE)

    html = user_client.get(reverse("memory:index")).content.decode()

    assert "never expires" in _group(html, "profile")
    assert '<svg class="icon icon-pin"' in _group(html, "profile")
    assert 'aria-label="Pinned"' in _group(html, "profile")
    assert "Unpin" in _group(html, "profile")
    assert "never expires" not in _group(html, "preference")


def test_the_page_needs_a_signed_in_person() -> None:
    response = Client().get(reverse("memory:index"))

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


# --- Add ---


def test_add_returns_the_list_with_the_new_memory(user: Any, user_client: Client) -> None:
    response = user_client.post(
        reverse("memory:add"),
        {"content": "I prefer metric units", "kind": "preference"},
        headers=HTMX,
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="memory-list"')
    assert "I prefer metric units" in _group(html, "preference")
    memory = Memory.objects.get(user=user)
    assert (memory.kind, memory.content) == ("preference", "I prefer metric units")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("   ", "A memory cannot be empty."),
        ("x" * 501, "A memory can be at most 500 characters (this one has 501)."),
    ],
)
def test_add_error_is_a_400_retargeted_to_the_add_form(
    user: Any, user_client: Client, content: str, message: str
) -> None:
    response = user_client.post(reverse("memory:add"), {"content": content}, headers=HTMX)

    assert response.status_code == 400
    assert response["HX-Retarget"] == "#add-error"
    # Into the error slot, not over it: the slot must be there for the next attempt.
    assert response["HX-Reswap"] == "innerHTML"
    assert response.content.decode().strip() == message
    assert not Memory.objects.filter(user=user).exists()


def test_add_with_an_unknown_kind_is_400(user: Any, user_client: Client) -> None:
    response = user_client.post(reverse("memory:add"), {"content": "I like tea", "kind": "x"})

    assert response.status_code == 400
    assert "Unknown kind" in response.content.decode()
    assert not Memory.objects.filter(user=user).exists()


# --- Edit, pin, delete, history ---


def test_edit_get_returns_the_inline_form_and_cancel_returns_the_item(
    user: Any, user_client: Client
) -> None:
    memory = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)

    form = user_client.get(reverse("memory:edit", args=[memory.pk]), headers=HTMX).content.decode()
    view = user_client.get(
        reverse("memory:edit", args=[memory.pk]), {"mode": "view"}, headers=HTMX
    ).content.decode()

    assert form.lstrip().startswith(f'<article id="memory-{memory.pk}"')
    assert f'<textarea id="edit-{memory.pk}" name="content"' in form
    assert ">I live in Lisbon</textarea>" in form
    assert '<option value="profile" selected>' in form
    assert "<textarea" not in view
    assert '<p class="memory-text">I live in Lisbon</p>' in view


def test_edit_post_saves_the_text_and_returns_the_item(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    Memory.objects.filter(pk=memory.pk).update(created_at=timezone.now() - timedelta(days=3))

    response = user_client.post(
        reverse("memory:edit", args=[memory.pk]),
        {"content": "I live in Porto", "kind": "profile"},
        headers=HTMX,
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<article id="memory-{memory.pk}"')
    assert "I live in Porto" in html and "<textarea" not in html
    assert "changed just now" in html and "0\xa0minutes" not in html
    memory.refresh_from_db()
    assert memory.content == "I live in Porto"
    event = MemoryEvent.objects.filter(memory_ref=memory.pk).order_by("-id").first()
    assert event is not None
    assert (event.action, event.old_content, event.new_content) == (
        "updated",
        "I live in Lisbon",
        "I live in Porto",
    )


def test_edit_post_with_empty_text_shows_the_error_in_the_item(
    user: Any, user_client: Client
) -> None:
    memory = _remember(user, "I live in Lisbon")

    response = user_client.post(
        reverse("memory:edit", args=[memory.pk]), {"content": ""}, headers=HTMX
    )

    assert response.status_code == 400
    assert response["HX-Retarget"] == f"#memory-{memory.pk} .form-error"
    assert response["HX-Reswap"] == "innerHTML"
    assert response.content.decode().strip() == "A memory cannot be empty."
    memory.refresh_from_db()
    assert memory.content == "I live in Lisbon"


def test_editing_a_memory_deleted_meanwhile_says_so(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I live in Lisbon")
    services.forget(user=user, memory_id=memory.pk)

    response = user_client.post(
        reverse("memory:edit", args=[memory.pk]), {"content": "I live in Porto"}, headers=HTMX
    )

    assert response.status_code == 404
    assert "no longer exists" in response.content.decode()
    assert not Memory.objects.filter(user=user).exists()


def test_pin_and_unpin_return_the_item_and_change_the_memory(
    user: Any, user_client: Client
) -> None:
    memory = _remember(user, "I live in Lisbon")

    pinned = user_client.post(
        reverse("memory:pin", args=[memory.pk]), {"pinned": "true"}, headers=HTMX
    )

    html = pinned.content.decode()
    assert pinned.status_code == 200
    assert html.lstrip().startswith(f'<article id="memory-{memory.pk}" class="memory-item pinned"')
    assert 'aria-label="Pinned"' in html and "never expires" in html
    assert "{&quot;pinned&quot;: &quot;false&quot;}" in html or '"pinned": "false"' in html
    memory.refresh_from_db()
    assert memory.pinned is True

    unpinned = user_client.post(
        reverse("memory:pin", args=[memory.pk]), {"pinned": "false"}, headers=HTMX
    )

    assert "never expires" not in unpinned.content.decode()
    memory.refresh_from_db()
    assert memory.pinned is False


def test_delete_returns_the_list_without_the_memory(user: Any, user_client: Client) -> None:
    lisbon = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    _remember(user, "I love hiking", Memory.Kind.PREFERENCE)

    response = user_client.post(reverse("memory:delete", args=[lisbon.pk]), headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="memory-list"')
    assert "I live in Lisbon" not in html
    assert "I love hiking" in html
    assert _count(_group(html, "profile")) == 0
    assert not Memory.objects.filter(pk=lisbon.pk).exists()


def test_history_fragment_shows_each_change_with_the_old_text(
    user: Any, user_client: Client
) -> None:
    memory = _remember(user, "I live in Lisbon")
    services.update_memory(user=user, memory_id=memory.pk, content="I live in Porto")
    services.set_pinned(user=user, memory_id=memory.pk, pinned=True)

    response = user_client.get(reverse("memory:history", args=[memory.pk]), headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<ol class="history-list">')
    assert html.count("<li>") == 3
    assert "<del>I live in Lisbon</del> → I live in Porto" in html
    assert html.index("Pinned") < html.index("Updated") < html.index("Added")


def test_history_of_a_memory_i_deleted_is_still_shown(user: Any, user_client: Client) -> None:
    memory = _remember(user, "I live in Lisbon")
    services.forget(user=user, memory_id=memory.pk)

    response = user_client.get(reverse("memory:history", args=[memory.pk]), headers=HTMX)

    assert response.status_code == 200
    assert "Deleted" in response.content.decode()
    assert "Added" in response.content.decode()


# --- Search ---


def test_search_from_htmx_returns_only_the_list_fragment_with_matches(
    user: Any, user_client: Client
) -> None:
    _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    _remember(user, "I love hiking", Memory.Kind.PREFERENCE)

    response = user_client.get(
        reverse("memory:index"),
        {"q": "where do I live"},
        headers={"HX-Request": "true", "HX-Target": "memory-list"},
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="memory-list"')
    assert "<html" not in html and "Forget everything" not in html
    assert "1 result for “where do I live”" in html
    assert "I live in Lisbon" in html
    assert "I love hiking" not in html


def test_search_without_htmx_returns_the_whole_page_with_the_results(
    user: Any, user_client: Client
) -> None:
    _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)

    html = user_client.get(reverse("memory:index"), {"q": "Lisbon"}).content.decode()

    assert "<html" in html
    assert "1 result for “Lisbon”" in html
    assert 'value="Lisbon"' in html


# --- Forget everything, the switch, summaries ---


def test_forget_all_with_the_wrong_confirmation_is_400_and_deletes_nothing(
    user: Any, user_client: Client
) -> None:
    _remember(user, "I live in Lisbon")
    _summary(user, "I planned a trip.")

    response = user_client.post(reverse("memory:forget-all"), {"confirm": "yes"}, headers=HTMX)

    assert response.status_code == 400
    assert response["HX-Retarget"] == "#forget-all-error"
    assert response["HX-Reswap"] == "innerHTML"
    assert "forget everything" in response.content.decode()
    assert Memory.objects.filter(user=user).count() == 1
    assert ConversationSummary.objects.filter(user=user).count() == 1


def test_forget_all_with_the_right_confirmation_deletes_everything_of_mine(
    user: Any, other_user: Any, user_client: Client
) -> None:
    _remember(user, "I live in Lisbon")
    _remember(user, "I love hiking")
    _summary(user, "I planned a trip.")
    theirs = _remember(other_user, "I live in Oslo")

    response = user_client.post(
        reverse("memory:forget-all"), {"confirm": "forget everything"}, headers=HTMX
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "I live in Lisbon" not in html and "I planned a trip." not in html
    assert not Memory.objects.filter(user=user).exists()
    assert not MemoryEvent.objects.filter(user=user).exists()
    assert not ConversationSummary.objects.filter(user=user).exists()
    assert Memory.objects.filter(pk=theirs.pk).exists()


def test_the_memory_switch_pauses_and_resumes_memory(user: Any, user_client: Client) -> None:
    off = user_client.post(reverse("memory:settings"), {"enabled": "false"}, headers=HTMX)

    html = off.content.decode()
    assert html.lstrip().startswith('<form id="memory-switch"')
    assert "Memory paused" in html and "Turn memory on" in html
    assert User.objects.get(pk=user.pk).memory_enabled is False

    on = user_client.post(reverse("memory:settings"), {"enabled": "true"}, headers=HTMX)

    assert "Memory on" in on.content.decode() and "Pause memory" in on.content.decode()
    assert User.objects.get(pk=user.pk).memory_enabled is True


def test_the_memory_switch_without_htmx_redirects_to_the_page(
    user: Any, user_client: Client
) -> None:
    response = user_client.post(reverse("memory:settings"), {"enabled": "false"})

    assert response.status_code == 302
    assert response["Location"] == reverse("memory:index")
    assert User.objects.get(pk=user.pk).memory_enabled is False


def test_deleting_a_summary_returns_the_list_without_it(user: Any, user_client: Client) -> None:
    summary = _summary(user, "I planned a walk along the Tagus.")

    response = user_client.post(reverse("memory:delete-summary", args=[summary.pk]), headers=HTMX)

    assert response.status_code == 200
    assert "I planned a walk along the Tagus." not in response.content.decode()
    assert _count(_group(response.content.decode(), "summaries")) == 0
    assert not ConversationSummary.objects.filter(pk=summary.pk).exists()


# --- What a message taught Mnemo ---


def test_learned_before_extraction_polls_again(user: Any, user_client: Client) -> None:
    conversation = chat_services.start_conversation(user=user)
    message = _said(user, conversation, "I live in Lisbon.")

    response = user_client.get(reverse("memory:learned"), {"message": message.pk}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="learned-{message.pk}"' in html
    assert re.search(rf'hx-get="/memory/learned\?message={message.pk}&(amp;)?attempt=1"', html)
    assert 'hx-trigger="load delay:2s"' in html
    assert "Remembered" not in html


def test_learned_keeps_asking_less_often_while_extraction_is_slow(
    user: Any, user_client: Client
) -> None:
    # On the local model under load extraction takes a minute or more: after the first
    # 2-second polls the chat keeps asking, every 5 s, instead of giving up after ~30 s.
    conversation = chat_services.start_conversation(user=user)
    message = _said(user, conversation, "I live in Lisbon.")

    html = user_client.get(
        reverse("memory:learned"), {"message": message.pk, "attempt": 15}, headers=HTMX
    ).content.decode()

    assert re.search(rf'hx-get="/memory/learned\?message={message.pk}&(amp;)?attempt=16"', html)
    assert 'hx-trigger="load delay:5s"' in html


def test_learned_stops_polling_after_the_last_attempt(user: Any, user_client: Client) -> None:
    conversation = chat_services.start_conversation(user=user)
    message = _said(user, conversation, "I live in Lisbon.")

    html = user_client.get(
        reverse("memory:learned"), {"message": message.pk, "attempt": 40}
    ).content.decode()

    assert f'id="learned-{message.pk}"' in html
    assert "hx-get" not in html


def test_learned_after_extraction_lists_what_was_remembered_with_undo(
    user: Any, user_client: Client
) -> None:
    message = _learned_from_message(
        user,
        "I live in Lisbon and I love hiking.",
        [("profile", "I live in Lisbon"), ("preference", "I love hiking")],
    )
    lisbon = Memory.objects.get(user=user, content="I live in Lisbon")

    response = user_client.get(reverse("memory:learned"), {"message": message.pk}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "hx-get" not in html
    assert html.count("<strong>Remembered:</strong>") == 2
    assert "<span>I live in Lisbon</span>" in html and "<span>I love hiking</span>" in html
    undo = re.search(
        rf'<p class="learned-item" id="learned-memory-{lisbon.pk}">.*?</p>', html, re.S
    )
    assert undo
    assert f'hx-post="/memory/{lisbon.pk}/delete"' in undo.group(0)
    assert ">Undo</button>" in undo.group(0)


def test_learned_for_another_users_message_shows_nothing_of_theirs(
    other_user: Any, user_client: Client
) -> None:
    theirs = _learned_from_message(other_user, "I live in Oslo.", [("profile", "I live in Oslo")])

    response = user_client.get(reverse("memory:learned"), {"message": theirs.pk}, headers=HTMX)

    html = response.content.decode()
    assert "Oslo" not in html
    assert "Remembered" not in html
    assert "learned-memory-" not in html


def test_learned_without_a_message_id_is_400(user_client: Client) -> None:
    assert user_client.get(reverse("memory:learned"), {"message": "abc"}).status_code == 400


def test_undo_from_the_chat_forgets_the_memory_and_says_so(user: Any, user_client: Client) -> None:
    message = _learned_from_message(user, "I live in Lisbon.", [("profile", "I live in Lisbon")])
    lisbon = Memory.objects.get(user=user)

    response = user_client.post(
        reverse("memory:delete", args=[lisbon.pk]), {"from": "chat"}, headers=HTMX
    )

    assert response.status_code == 200
    assert "Forgotten." in response.content.decode()
    assert "memories-changed" in json.loads(response["HX-Trigger"])
    assert not Memory.objects.filter(pk=lisbon.pk).exists()
    html = user_client.get(reverse("memory:learned"), {"message": message.pk}).content.decode()
    assert "Lisbon" not in html


# --- The chat's "Used N memories" ---


def _chat_turn(user: Any, conversation: Conversation, text: str) -> Message:
    """One real turn: send, then generate the reply (recall runs and is recorded)."""
    _message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=text
    )

    async def generate() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(generate)()
    reply.refresh_from_db()
    return reply


def test_the_chat_shows_the_memories_a_reply_used_each_with_a_forget_button(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    lisbon = _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    hiking = _remember(user, "I love hiking", Memory.Kind.PREFERENCE)
    conversation = chat_services.start_conversation(user=user)
    fake_llm.reply("Try the trails of Sintra.")
    reply = _chat_turn(user, conversation, "Any trails near me?")
    assert set(reply.memories_used.all()) == {lisbon, hiking}

    html = user_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()

    assert "Used 2 memories" in html
    for memory in (lisbon, hiking):
        item = re.search(rf'<li id="used-{reply.pk}-{memory.pk}">.*?</li>', html, re.S)
        assert item, memory.content
        assert memory.content in item.group(0)
        assert f'hx-post="/memory/{memory.pk}/delete"' in item.group(0)
        assert """hx-vals='{"from": "chat"}'""" in item.group(0)
        assert ">Forget</button>" in item.group(0)

    forget = user_client.post(
        reverse("memory:delete", args=[hiking.pk]), {"from": "chat"}, headers=HTMX
    )

    assert forget.status_code == 200
    assert "Forgotten." in forget.content.decode()
    assert list(Memory.objects.filter(user=user)) == [lisbon]
    html = user_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "Used 1 memory " in html
    assert "<span>I love hiking</span>" not in html


def test_a_reply_in_an_incognito_chat_shows_no_memories_used(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    _remember(user, "I live in Lisbon", Memory.Kind.PROFILE)
    conversation = chat_services.start_conversation(user=user, incognito=True)
    fake_llm.reply("Hi there!")
    reply = _chat_turn(user, conversation, "Hello")

    html = user_client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()

    assert reply.content in html
    assert not reply.memories_used.exists()
    assert "used-memories" not in html
    assert "I live in Lisbon" not in html


# --- Isolation ---


def test_every_action_on_another_users_memory_is_404_or_does_nothing(
    other_user: Any, user_client: Client
) -> None:
    theirs = _remember(other_user, "I live in Oslo", Memory.Kind.PROFILE)
    their_summary = _summary(other_user, "I asked about fjords.")
    their_entity, _ = entities.upsert_entity(
        user=other_user, name="Oslo Fjord", type="place", attributes={"near": "home"}
    )
    events_before = MemoryEvent.objects.filter(user=other_user).count()

    answers = {
        "edit form": user_client.get(reverse("memory:edit", args=[theirs.pk]), headers=HTMX),
        "edit save": user_client.post(
            reverse("memory:edit", args=[theirs.pk]), {"content": "I live in Rome"}, headers=HTMX
        ),
        "pin": user_client.post(reverse("memory:pin", args=[theirs.pk]), {"pinned": "true"}),
        "history": user_client.get(reverse("memory:history", args=[theirs.pk]), headers=HTMX),
        "summary delete": user_client.post(
            reverse("memory:delete-summary", args=[their_summary.pk]), headers=HTMX
        ),
        "entity form": user_client.get(
            reverse("memory:edit-entity", args=[their_entity.pk]), headers=HTMX
        ),
        "entity save": user_client.post(
            reverse("memory:edit-entity", args=[their_entity.pk]),
            {"name": "Mine now", "attributes": ""},
            headers=HTMX,
        ),
    }
    deleted = user_client.post(reverse("memory:delete", args=[theirs.pk]), headers=HTMX)
    entity_deleted = user_client.post(
        reverse("memory:delete-entity", args=[their_entity.pk]), headers=HTMX
    )

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    assert "Oslo" not in deleted.content.decode()
    assert "Oslo" not in entity_deleted.content.decode()
    for response in answers.values():
        assert "Oslo" not in response.content.decode()
    theirs.refresh_from_db()
    assert (theirs.content, theirs.pinned) == ("I live in Oslo", False)
    assert MemoryEvent.objects.filter(user=other_user).count() == events_before
    assert ConversationSummary.objects.filter(pk=their_summary.pk).exists()
    their_entity.refresh_from_db()
    assert (their_entity.name, their_entity.attributes) == ("Oslo Fjord", {"near": "home"})
    page = user_client.get(reverse("memory:index"), {"q": "Oslo"}).content.decode()
    assert "I live in Oslo" not in page and "fjords" not in page
