"""Erasure: deleting an account leaves nothing of the person, anywhere, and no one else loses.

The canary test plants one unique string everywhere a person's data can go (messages,
memories, their history, summaries, extraction runs, cache keys, rate-limit counters, a task
still queued in Redis), erases the account through the page, then scans every table of the
database and every key of Redis for it, and runs the queued task with a real Celery worker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django_redis import get_redis_connection

from accounts import services as account_services
from accounts.models import ErasureReceipt, User
from chat import services as chat_services
from chat.models import Conversation, Message
from chat.tasks import extract_memories_task
from memory import extraction
from memory import services as memory_services
from memory.models import ConversationSummary, ExtractionRun, Memory, MemoryEvent
from tests.conftest import WorkerProcess
from tests.factories import PASSWORD, UserFactory
from tests.fake_llm import FakeLLM, fake_embedding

CANARY = "canary-7f3a9c"
WRONG = "That password is not correct."


# --- Scanners: every table, every Redis key ---


def _tables() -> list[str]:
    with connection.cursor() as cursor:
        return sorted(connection.introspection.table_names(cursor))


def _rows_containing(needle: str) -> dict[str, int]:
    """{table: rows whose whole-row text contains `needle`}, over every table."""
    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table in _tables():
            cursor.execute(f'SELECT t::text FROM "{table}" t')  # every row, every column
            hits = sum(1 for (text,) in cursor.fetchall() if needle in text)
            if hits:
                found[table] = hits
    return found


def _user_columns() -> list[tuple[str, str]]:
    """(table, column) of every column that refers to a user: FKs to the user table, user_id."""
    user_table = User._meta.db_table
    columns: set[tuple[str, str]] = set()
    with connection.cursor() as cursor:
        for table in _tables():
            relations = connection.introspection.get_relations(cursor, table)
            columns |= {(table, c) for c, (_, target) in relations.items() if target == user_table}
            description = connection.introspection.get_table_description(cursor, table)
            columns |= {(table, c.name) for c in description if c.name == "user_id"}
    return sorted(columns)


def _rows_referencing(user_id: int) -> dict[str, int]:
    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table, column in _user_columns():
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = %s', [user_id])
            (count,) = cursor.fetchone()
            if count:
                found[f"{table}.{column}"] = count
        cursor.execute(f'SELECT count(*) FROM "{User._meta.db_table}" WHERE id = %s', [user_id])
        if cursor.fetchone()[0]:
            found[User._meta.db_table] = 1
    return found


def _fingerprint(user_id: int) -> dict[str, tuple[int, str]]:
    """Row count and a digest of the rows' text, per user column, for one person."""
    result: dict[str, tuple[int, str]] = {}
    with connection.cursor() as cursor:
        for table, column in [*_user_columns(), (User._meta.db_table, "id")]:
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f'FROM "{table}" t WHERE "{column}" = %s',
                [user_id],
            )
            count, digest = cursor.fetchone()
            result[f"{table}.{column}"] = (count, digest)
    return result


def _sessions_of(user_id: int) -> list[str]:
    return [
        s.session_key
        for s in Session.objects.all()
        if str(s.get_decoded().get("_auth_user_id")) == str(user_id)
    ]


def _expand(blob: bytes) -> list[bytes]:
    """A Redis value, plus the decoded bodies of any Celery (kombu) messages inside it."""
    parts = [blob]
    try:
        value = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return parts
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            body = item.get("body")
            if isinstance(body, str):
                try:
                    parts.append(base64.b64decode(body, validate=True))
                except (binascii.Error, ValueError):
                    parts.append(body.encode())
            stack.extend(item.values())
    return parts


def _redis_dump() -> dict[bytes, bytes]:
    """Every key of the Redis database the app uses, with its value dumped by type."""
    redis = get_redis_connection("default")
    dump: dict[bytes, bytes] = {}
    for key in redis.keys("*"):
        kind = redis.type(key)
        values: list[bytes]
        if kind == b"string":
            values = [redis.get(key) or b""]
        elif kind == b"list":
            values = redis.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [part for pair in redis.hgetall(key).items() for part in pair]
        elif kind == b"set":
            values = list(redis.smembers(key))
        elif kind == b"zset":
            values = list(redis.zrange(key, 0, -1))
        else:
            values = [kind]
        dump[key] = b"\n".join(part for value in values for part in _expand(value))
    return dump


def _redis_hits(needle: str) -> list[bytes]:
    raw = needle.encode()
    return [key for key, value in _redis_dump().items() if raw in key or raw in value]


def _login_failed_hash(email: str, host: str = "testserver") -> str:
    # allauth keys failed logins per account by a hash of "<site domain>:<email>".
    return hashlib.sha256(f"{host}:{email.lower()}".encode()).hexdigest()


def _queue_is_drained(timeout: float = 60) -> None:
    redis = get_redis_connection("default")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not redis.llen("celery") and not redis.hlen("unacked"):
            return
        time.sleep(0.1)
    raise AssertionError("the worker did not drain the queue")


# --- Building a person's data ---


def _vector(text: str) -> list[float]:
    return fake_embedding(text, 384)


def _remember(user: Any, content: str, kind: str = "fact") -> Memory:
    return memory_services.remember(
        user=user, content=content, kind=kind, embedding=_vector(content)
    )


def _turn(client: Client, user: Any, conversation: Conversation, text: str) -> Message:
    """Send a message through the page (rate-limit key) and stream the reply to its end."""
    response = client.post(reverse("chat:send", args=[conversation.pk]), {"content": text})
    assert response.status_code == 200, response.content
    reply = Message.objects.filter(conversation=conversation, role="assistant").latest("id")

    async def stream() -> None:
        async for _ in chat_services.stream_reply(user=user, message_id=reply.pk):
            pass

    async_to_sync(stream)()
    return Message.objects.filter(conversation=conversation, role="user").latest("id")


def _facts_responder(facts: dict[str, list[dict[str, str]]]) -> Callable[..., Any]:
    def responder(request: dict[str, Any]) -> str | dict[str, Any]:
        schema = (request.get("response_format") or {}).get("schema") or {}
        text = request["messages"][-1]["content"]
        if "facts" in schema.get("properties", {}):
            return {"facts": facts.get(text, [])}
        if "decisions" in schema.get("properties", {}):
            return {"decisions": []}
        return f"Noted: {text[:40]}"

    return responder


def _plant_everything(user: Any, client: Client, marker: str) -> dict[str, Any]:
    """Put `marker` in every kind of row and key that belongs to `user`."""
    said = f"My codename is {marker} and I keep bees on the roof."
    later = f"Please remember that {marker} is also my locker number."
    conversation = chat_services.start_conversation(user=user)
    first = _turn(client, user, conversation, said)
    # Extraction (ExtractionRun, a memory with the message as its excerpt, its event).
    run = extraction.extract(
        user=user, text=first.content, source_message_id=first.pk,
        source_conversation_id=conversation.pk,
    )  # fmt: skip
    assert run is not None and run.added >= 1
    # Memories and their history: added, updated (old + new text), deleted by the extractor.
    profile = _remember(user, f"I am known as {marker} at work", kind="profile")
    memory_services.update_memory(
        user=user, memory_id=profile.pk, content=f"I am known as {marker} at home",
        embedding=_vector(f"home {marker}"),
    )  # fmt: skip
    doomed = _remember(user, f"My old alias was {marker}")
    memory_services.forget(user=user, memory_id=doomed.pk, actor="extractor")
    memory_services.set_pinned(user=user, memory_id=profile.pk, pinned=True)
    # A second turn: the reply uses the profile memory (the memories-used link table).
    second = _turn(client, user, conversation, later)
    memory_services.save_summary(
        user=user, conversation_id=conversation.pk, conversation_title=f"About {marker}",
        content=f"I told the assistant my codename {marker}.", last_message_id=second.pk,
        message_count=4,
    )  # fmt: skip
    cache.set(f"{account_services.user_cache_prefix(user.pk)}note", f"cached {marker}", 600)
    return {"conversation": conversation, "first": first, "second": second}


# --- The canary ---


@pytest.mark.django_db(transaction=True)
def test_erasure_leaves_no_trace_in_any_table_or_redis_key_and_queued_tasks_do_nothing(
    fake_llm: FakeLLM, worker_env: dict[str, str], settings: Any
) -> None:
    email = f"{CANARY}@example.com"
    client, other_client = Client(), Client()
    # Signing up through the page also records the email address (allauth's own table).
    response = client.post(
        reverse("account_signup"), {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    user = User.objects.get(email=email)
    User.objects.filter(pk=user.pk).update(display_name=CANARY)
    other: Any = UserFactory()
    assert other_client.login(email=other.email, password=PASSWORD)
    # A failed login through the real login page: allauth counts it in Redis, per account.
    response = Client().post(reverse("account_login"), {"login": email, "password": "wrong"})
    assert response.status_code == 200
    login_hash = _login_failed_hash(email)

    fake_llm.responder = _facts_responder(
        {
            f"My codename is {CANARY} and I keep bees on the roof.": [
                {"kind": "fact", "content": f"My codename is {CANARY}"},
                {"kind": "fact", "content": "I keep bees on the roof"},
            ],
            "I collect vinyl records of seventies jazz.": [
                {"kind": "preference", "content": "I collect vinyl records of seventies jazz"}
            ],
        }
    )
    mine = _plant_everything(user, client, CANARY)
    theirs = _plant_everything(other, other_client, "other-person-4d2e")
    # A task still queued in Redis for the person (no worker is running yet).
    extract_memories_task.delay(mine["second"].pk)
    # And the other person's next message, queued after it: when its extraction appears,
    # the worker has been through the person's tasks.
    other_said = Message.objects.create(
        user=other, conversation=theirs["conversation"], role="user",
        content="I collect vinyl records of seventies jazz.",
    )  # fmt: skip

    # The scanners see what is there (so that finding nothing later means something).
    planted = _rows_containing(CANARY)
    for table in (
        "accounts_user", "chat_conversation", "chat_message", "memory_memory",
        "memory_memoryevent", "memory_conversationsummary", "account_emailaddress",
    ):  # fmt: skip
        assert table in planted, (table, planted)
    assert ExtractionRun.objects.filter(user=user).exists()
    assert Message.memories_used.through.objects.filter(message__user=user).exists()
    referencing = _rows_referencing(user.pk)
    for column in ("chat_message.user_id", "memory_extractionrun.user_id"):
        assert column in referencing
    assert _sessions_of(user.pk)
    prefix = account_services.user_cache_prefix(user.pk)
    keys = [key.decode() for key in _redis_dump()]
    assert any(f"{prefix}note" in key for key in keys)
    assert any(f"{prefix}chat:rate:" in key for key in keys)
    assert any(login_hash in key for key in keys)
    assert _redis_hits(CANARY)
    assert get_redis_connection("default").llen("celery") >= 1  # the queued extraction
    before_other = _fingerprint(other.pk)
    other_keys = {k: v for k, v in _redis_dump().items() if f":user:{other.pk}:".encode() in k}
    assert other_keys

    # Erase through the page: the confirmation shows what will go; the password again.
    page = client.get(reverse("accounts:erase"))
    assert page.status_code == 200
    preview = account_services.erasure_preview(user=user)
    assert f"<strong>{preview['messages']}</strong> messages" in page.content.decode()
    response = client.post(reverse("accounts:erase"), {"password": PASSWORD})

    assert response.status_code == 200
    receipt = ErasureReceipt.objects.get()
    html = response.content.decode()
    assert "Your account is erased" in html
    # What of theirs went, in their words; the exact counts stay on the receipt.
    for item in account_services.erased_items(receipt.counts):
        assert f"<li>{item}</li>" in html
    assert "1 conversation with 4 messages" in html
    for internal in ("extraction run", "cache key", "entity event", "session", "<li>0 "):
        assert internal not in html
    assert receipt.counts["messages"] == preview["messages"] == 4
    assert receipt.counts["memories"] == preview["memories"]
    assert receipt.counts["conversations"] == 1
    assert receipt.counts["sessions"] >= 1
    assert receipt.counts["cache keys"] >= 3  # the note, the chat rate key, the failed login
    # The receipt: a keyed hash of the email, counts, a time; nothing personal.
    assert receipt.subject_hash == account_services.subject_hash(email)
    assert receipt.subject_hash != hashlib.sha256(email.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT t::text FROM accounts_erasurereceipt t")
        (receipt_text,) = cursor.fetchone()
    assert CANARY not in receipt_text and email not in receipt_text
    # Signed out; the account pages send a visitor to the login page.
    assert client.get(reverse("accounts:account"))["Location"].startswith(reverse("account_login"))

    def assert_nothing_left() -> None:
        assert _rows_containing(CANARY) == {}
        assert _rows_referencing(user.pk) == {}
        assert _sessions_of(user.pk) == []
        assert _redis_hits(CANARY) == []
        assert [k for k in _redis_dump() if prefix.encode() in k] == []
        assert [k for k in _redis_dump() if login_hash.encode() in k] == []

    assert_nothing_left()
    # The other person is untouched: same rows, same content, same cache keys, still signed in.
    assert _fingerprint(other.pk) == before_other
    assert {
        k: v for k, v in _redis_dump().items() if f":user:{other.pk}:".encode() in k
    } == other_keys
    assert other_client.get(reverse("accounts:account")).status_code == 200
    assert _rows_containing("other-person-4d2e")

    # Now a worker runs what was queued: the person's extraction and title tasks find
    # nothing and recreate nothing; the other person's extraction, queued last, runs.
    extract_memories_task.delay(other_said.pk)
    worker = WorkerProcess(worker_env, name=f"erasure-{time.monotonic_ns()}").start()
    try:
        deadline = time.monotonic() + 60
        while not ExtractionRun.objects.filter(source_message_id=other_said.pk).exists():
            assert time.monotonic() < deadline, "the worker never reached the sentinel task"
            time.sleep(0.1)
        _queue_is_drained()
    finally:
        worker.stop()
    assert_nothing_left()
    assert not Memory.objects.filter(user_id=user.pk).exists()
    assert not ExtractionRun.objects.filter(source_message_id=mine["second"].pk).exists()
    assert Memory.objects.filter(user=other, content__contains="vinyl").exists()


# --- The password is asked again; the API does the same; visitors are sent away ---


@pytest.mark.django_db
def test_a_wrong_password_erases_nothing(user: Any, user_client: Client) -> None:
    _remember(user, "I keep bees on the roof")
    before = _fingerprint(user.pk)

    response = user_client.post(reverse("accounts:erase"), {"password": "not my password"})

    assert response.status_code == 400
    assert WRONG in response.content.decode()
    assert _fingerprint(user.pk) == before
    assert not ErasureReceipt.objects.exists()
    assert user_client.get(reverse("accounts:account")).status_code == 200  # still signed in

    response = user_client.post(reverse("accounts:erase"), {})
    assert response.status_code == 400
    assert User.objects.filter(pk=user.pk).exists()


@pytest.mark.django_db
def test_the_api_previews_then_erases_with_the_password(
    user: Any, other_user: Any, user_client: Client
) -> None:
    conversation = chat_services.start_conversation(user=user)
    chat_services.send_message(user=user, conversation_id=conversation.pk, content="Hello there")
    _remember(user, "I keep bees on the roof")
    _remember(other_user, "I play the cello")
    before_other = _fingerprint(other_user.pk)
    url = reverse("api-account")

    preview = user_client.get(url)
    assert preview.status_code == 200
    assert preview.json()["erasure_preview"]["messages"] == 2
    assert preview.json()["erasure_preview"]["memories"] == 1

    missing = user_client.delete(url, data="{}", content_type="application/json")
    assert missing.status_code == 400
    wrong = user_client.delete(
        url, data=json.dumps({"password": "nope"}), content_type="application/json"
    )
    assert wrong.status_code == 400
    assert wrong.json()["detail"] == WRONG
    assert User.objects.filter(pk=user.pk).exists()
    assert not ErasureReceipt.objects.exists()

    response = user_client.delete(
        url, data=json.dumps({"password": PASSWORD}), content_type="application/json"
    )

    assert response.status_code == 200
    body = response.json()
    receipt = ErasureReceipt.objects.get()
    assert body["counts"] == receipt.counts
    assert body["counts"]["messages"] == 2
    assert body["counts"]["memories"] == 1
    assert body["counts"]["conversations"] == 1
    assert body["erased_at"]
    assert receipt.subject_hash == account_services.subject_hash(user.email)
    assert _rows_referencing(user.pk) == {}
    assert _fingerprint(other_user.pk) == before_other
    assert user_client.get(url).status_code in (401, 403)  # the session went with the account


@pytest.mark.django_db
def test_visitors_cannot_erase_anything(client: Client, user: Any) -> None:
    for method in ("get", "post"):
        response = getattr(client, method)(reverse("accounts:erase"), {"password": PASSWORD})
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))
    url = reverse("api-account")
    assert client.get(url).status_code in (401, 403)
    response = client.delete(
        url, data=json.dumps({"password": PASSWORD}), content_type="application/json"
    )
    assert response.status_code in (401, 403)
    assert User.objects.filter(pk=user.pk).exists()
    assert not ErasureReceipt.objects.exists()


# --- Erasure racing an extraction ---


class _Background(threading.Thread):
    """Runs `target` on its own database connection; keeps its result or its exception."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.target()
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()


def _said(user: Any, text: str) -> Message:
    conversation = chat_services.start_conversation(user=user)
    message, _ = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content=text
    )
    return message


def _nothing_for(user_id: int) -> None:
    assert not User.objects.filter(pk=user_id).exists()
    assert not Memory.objects.filter(user_id=user_id).exists()
    assert not MemoryEvent.objects.filter(user_id=user_id).exists()
    assert not ExtractionRun.objects.filter(user_id=user_id).exists()
    assert not ConversationSummary.objects.filter(user_id=user_id).exists()
    assert not Message.objects.filter(user_id=user_id).exists()


TEXT = "I live in Lisbon and I teach a beginners pottery class."
FACTS = [
    {"kind": "profile", "content": "I live in Lisbon"},
    {"kind": "fact", "content": "I teach a beginners pottery class"},
]


@pytest.mark.django_db(transaction=True)
def test_an_extraction_in_flight_when_the_account_is_erased_recreates_nothing(
    user: Any, user_client: Client, fake_llm: FakeLLM
) -> None:
    _remember(user, "I keep bees on the roof")
    message = _said(user, TEXT)
    asked, erased = threading.Event(), threading.Event()

    def slow_facts(request: dict[str, Any]) -> str | dict[str, Any]:
        schema = (request.get("response_format") or {}).get("schema") or {}
        if "facts" in schema.get("properties", {}):
            asked.set()
            # The model thinks (up to 10 s) while the person erases their account.
            erased.wait(10)
            return {"facts": FACTS}
        return {"decisions": []}

    fake_llm.responder = slow_facts
    user_id = user.pk
    worker = _Background(
        lambda: extraction.extract(
            user=user, text=TEXT, source_message_id=message.pk,
            source_conversation_id=message.conversation_id,
        )
    )  # fmt: skip
    worker.start()
    assert asked.wait(10), "the extraction never asked the model"

    response = user_client.post(reverse("accounts:erase"), {"password": PASSWORD})
    # The erasure did not wait for the extraction: the model is still thinking.
    assert worker.is_alive()
    erased.set()
    worker.join(30)
    assert response.status_code == 200

    assert not worker.is_alive()
    # A clean "nothing to do": the extraction found no one to write for and returned None.
    assert worker.error is None, repr(worker.error)
    assert worker.result is None
    _nothing_for(user_id)


@pytest.mark.django_db(transaction=True)
def test_an_erasure_arriving_while_an_extraction_writes_waits_then_deletes_what_it_wrote(
    user: Any, user_client: Client, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _said(user, TEXT)
    fake_llm.responder = _facts_responder({TEXT: FACTS})
    writing = threading.Event()
    real_remember = memory_services.remember

    def slow_remember(**kwargs: Any) -> Memory:
        memory = real_remember(**kwargs)
        writing.set()  # inside the extraction's transaction, holding the person's row lock
        time.sleep(1.5)
        return memory

    monkeypatch.setattr(memory_services, "remember", slow_remember)
    user_id = user.pk
    worker = _Background(
        lambda: extraction.extract(
            user=user, text=TEXT, source_message_id=message.pk,
            source_conversation_id=message.conversation_id,
        )
    )  # fmt: skip
    worker.start()
    assert writing.wait(15), "the extraction never wrote"

    response = user_client.post(reverse("accounts:erase"), {"password": PASSWORD})
    worker.join(30)

    assert response.status_code == 200
    assert worker.error is None, repr(worker.error)
    # The extraction committed first (the erasure waited for the person's row lock) ...
    assert isinstance(worker.result, ExtractionRun)
    assert worker.result.added == 2
    # ... and the erasure then deleted what it wrote, and says so.
    receipt = ErasureReceipt.objects.get()
    assert receipt.counts["memories"] == 2
    assert receipt.counts["extraction runs"] == 1
    _nothing_for(user_id)


@pytest.mark.django_db
def test_failed_login_counters_go_with_the_account_when_served_on_a_port(user: Any) -> None:
    # Without the sites framework allauth keys failed logins by "<host:port>:<email>".
    host = "localhost:8000"
    Client(HTTP_HOST=host).post(reverse("account_login"), {"login": user.email, "password": "x"})
    login_hash = _login_failed_hash(user.email, host=host)
    assert [k for k in _redis_dump() if login_hash.encode() in k]
    client = Client(HTTP_HOST=host)
    assert client.login(email=user.email, password=PASSWORD)

    response = client.post(reverse("accounts:erase"), {"password": PASSWORD})

    assert response.status_code == 200
    assert [k for k in _redis_dump() if login_hash.encode() in k] == []


# --- The erasure's statements cover every table that can hold a person's rows ---


def _tables_reaching_the_user() -> set[str]:
    """Every table with a chain of foreign keys to the user table: the constraints the
    database itself reports, plus the model fields that keep no constraint (link tables)."""
    from django.apps import apps

    with connection.cursor() as cursor:
        edges = {
            table: {target for _, target in connection.introspection.get_relations(
                cursor, table
            ).values()}
            for table in _tables()
        }  # fmt: skip
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is not None:
                edges.setdefault(model._meta.db_table, set()).add(
                    field.related_model._meta.db_table
                )
    reached = {User._meta.db_table}
    changed = True
    while changed:
        changed = False
        for table, targets in edges.items():
            if table not in reached and targets & reached:
                reached.add(table)
                changed = True
    return reached


@pytest.mark.django_db
def test_the_erasure_plan_has_a_statement_for_every_table_that_references_a_person() -> None:
    plan = account_services.erasure_plan()
    covered = {step.model._meta.db_table for step in plan}

    missing = _tables_reaching_the_user() - covered

    assert missing == set(), f"erasure would leave rows in {sorted(missing)}"
    # The tables reached only through a parent are there too, and the user row goes last.
    assert {"chat_message_memories_used", "memory_entity_memories"} <= covered
    assert plan[-1].model is User
    assert all(step.sql.count("%s") == step.params for step in plan)


@pytest.mark.django_db
def test_erasure_removes_links_and_children_that_only_reach_the_person_through_a_parent(
    user: Any, other_user: Any
) -> None:
    from allauth.account.models import EmailAddress, EmailConfirmation

    from memory.models import Entity

    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content="I keep bees"
    )
    mine = _remember(user, "I keep bees on the roof")
    reply.memories_used.add(mine)
    entity = Entity.objects.create(user=user, name="Bees", key="bees", type="other")
    entity.memories.add(mine)
    address = EmailAddress.objects.create(user=user, email=user.email, primary=True)
    EmailConfirmation.create(address)
    theirs = _remember(other_user, "I play the cello")
    other_conversation = chat_services.start_conversation(user=other_user)
    _, other_reply = chat_services.send_message(
        user=other_user, conversation_id=other_conversation.pk, content="Hello"
    )
    other_reply.memories_used.add(theirs)
    before_other = _fingerprint(other_user.pk)

    receipt = account_services.erase_account(user=user)

    assert not Message.memories_used.through.objects.filter(memory_id=mine.pk).exists()
    assert not Entity.memories.through.objects.filter(entity_id=entity.pk).exists()
    assert not EmailConfirmation.objects.filter(email_address_id=address.pk).exists()
    assert receipt.counts["memories"] == 1
    assert receipt.counts["messages"] == 2
    assert receipt.counts["people, pets and places"] == 1
    assert receipt.counts["email addresses"] == 1
    assert receipt.counts["account"] == 1
    _nothing_for(user.pk)
    assert _fingerprint(other_user.pk) == before_other
    assert Message.memories_used.through.objects.filter(memory_id=theirs.pk).exists()


@pytest.mark.django_db
def test_erasure_finds_the_persons_sessions_whatever_their_encoding(
    user: Any, other_user: Any
) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    def session(user_id: int, **extra: str) -> str:
        store = SessionStore()
        store.update({"_auth_user_id": str(user_id), **extra})
        store.create()
        assert store.session_key is not None
        return store.session_key

    plain = session(user.pk)
    compressed = session(user.pk, note="n" * 2000)  # long enough for signing to compress it
    other = session(other_user.pk, note="n" * 2000)
    anonymous = SessionStore()
    anonymous["cart"] = "empty"
    anonymous.create()
    assert Session.objects.get(session_key=compressed).session_data.startswith(".")

    assert sorted(account_services._session_keys(user.pk)) == sorted([plain, compressed])
    assert account_services._session_keys(other_user.pk) == [other]


def test_the_erased_page_says_what_of_the_persons_went_in_plain_words() -> None:
    """The tester's receipt read "3 extraction runs, 3 entity events, 0 cache keys"."""
    counts = {
        "account": 1,
        "email addresses": 1,
        "conversations": 3,
        "messages": 7,
        "memories": 1,
        "memory history events": 4,
        "people, pets and places": 0,
        "extraction runs": 3,
        "entity events": 3,
        "sessions": 1,
        "cache keys": 0,
    }
    assert account_services.erased_items(counts) == [
        "Your account and sign-in details (email address and password)",
        "3 conversations with 7 messages",
        "1 memory and its history",
        "The records Mnemo kept while learning from your messages",
        "You were signed out everywhere you were signed in",
    ]
    only = {"account": 1, "email addresses": 1, "people, pets and places": 1, "cache keys": 0}
    assert account_services.erased_items(only) == [
        "Your account and sign-in details (email address and password)",
        "1 person, pet or place",
    ]
