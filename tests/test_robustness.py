"""Bad input and faults: every request that once was a 500 now gets a clear 4xx, nothing lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.test import Client

from accounts import tokens
from chat import services as chat_services
from chat.models import Conversation, Message
from config import stack
from config.celery import app as celery_app
from memory import entities, services
from memory.models import Entity, Memory
from tests.conftest import AsgiServer
from tests.factories import PASSWORD, UserFactory
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.django_db

JSON = "application/json"
NUL = "before\x00after"
SURROGATE = "before\ud800after"


@pytest.fixture
def client_500(user: Any) -> Client:
    """A signed-in client that returns 500 responses instead of raising, to count them."""
    client = Client(raise_request_exception=False)
    assert client.login(email=user.email, password=PASSWORD)
    return client


def _refused(response: Any, *statuses: int) -> None:
    assert response.status_code in (statuses or (400,)), (
        response.status_code,
        response.content[:300],
    )
    body = response.content.decode(errors="replace")
    assert body.strip(), "a refusal says why"


# --- The eleven requests that were 500s ---


def test_a_nul_byte_in_a_sent_message_is_400_and_nothing_is_saved(
    user: Any, client_500: Client
) -> None:
    conversation = chat_services.start_conversation(user=user)
    response = client_500.post(f"/chat/c/{conversation.pk}/send", {"content": NUL})
    _refused(response)
    assert not Message.objects.filter(conversation=conversation).exists()


def test_a_nul_byte_in_a_new_memory_from_the_page_is_400(user: Any, client_500: Client) -> None:
    _refused(client_500.post("/memory/add", {"content": NUL, "kind": "fact"}))
    assert not Memory.objects.filter(user=user).exists()


def test_a_nul_byte_in_a_memory_edit_is_400_and_the_memory_is_unchanged(
    user: Any, client_500: Client
) -> None:
    memory = services.remember(user=user, content="I live in Lisbon", kind="fact")
    _refused(client_500.post(f"/memory/{memory.pk}/edit", {"content": NUL}))
    memory.refresh_from_db()
    assert memory.content == "I live in Lisbon"


def test_a_nul_byte_in_an_entity_edit_is_400_and_the_entity_is_unchanged(
    user: Any, client_500: Client
) -> None:
    entity, _ = entities.upsert_entity(user=user, name="Sarah", attributes={"job": "vet"})
    response = client_500.post(
        f"/memory/entities/{entity.pk}/edit", {"name": "Sarah", "attributes": f"job: {NUL}"}
    )
    _refused(response)
    entity.refresh_from_db()
    assert entity.attributes == {"job": "vet"}


def test_a_nul_byte_in_a_conversation_title_is_400(user: Any, client_500: Client) -> None:
    conversation = chat_services.start_conversation(user=user, title="Trip")
    _refused(client_500.post(f"/chat/c/{conversation.pk}/rename", {"title": NUL}))
    conversation.refresh_from_db()
    assert conversation.title == "Trip"


@pytest.mark.parametrize("url", ["/memory/?q=%00", "/api/memories/?q=%00"])
def test_a_nul_byte_in_a_search_query_is_400(client_500: Client, url: str) -> None:
    _refused(client_500.get(url))


def test_a_malformed_attempt_number_is_400(client_500: Client) -> None:
    _refused(client_500.get("/memory/learned?message=1&attempt=abc"))


def test_renaming_an_entity_to_another_entitys_name_is_409_naming_it(
    user: Any, client_500: Client
) -> None:
    entities.upsert_entity(user=user, name="Sarah")
    tom, _ = entities.upsert_entity(user=user, name="Tom", attributes={"job": "chef"})
    response = client_500.patch(
        f"/api/entities/{tom.pk}/",
        json.dumps({"name": "sarah", "attributes": {"job": "chef"}}),
        content_type=JSON,
    )
    _refused(response, 409)
    assert "Sarah" in response.json()["detail"]
    page = client_500.post(
        f"/memory/entities/{tom.pk}/edit", {"name": "Sarah", "attributes": "job: chef"}
    )
    _refused(page, 409)
    assert "Sarah" in page.content.decode()
    assert Entity.objects.get(pk=tom.pk).name == "Tom"


def test_a_json_body_nested_50000_deep_is_400(user: Any, client_500: Client) -> None:
    body = '{"content": ' + "[" * 50_000 + "]" * 50_000 + "}"
    _refused(client_500.post("/api/memories/", body, content_type=JSON))
    assert not Memory.objects.filter(user=user).exists()


# --- More bad input at the edges ---


@pytest.mark.parametrize("text", ["bad\u0000json", "bad\ud800json"])
def test_a_nul_byte_or_lone_surrogate_in_a_json_field_is_400(
    user: Any, client_500: Client, text: str
) -> None:
    body = json.dumps({"content": text})  # escaped as \u0000 / \ud800, as a client would
    _refused(client_500.post("/api/memories/", body, content_type=JSON))
    conversation = chat_services.start_conversation(user=user)
    _refused(
        client_500.post(f"/api/conversations/{conversation.pk}/messages/", body, content_type=JSON)
    )
    assert not Memory.objects.filter(user=user).exists()
    assert not Message.objects.filter(conversation=conversation).exists()


def test_a_body_over_the_upload_limit_is_413(user: Any, client_500: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"content": "x" * 20_000})
    _refused(client_500.post("/api/memories/", body, content_type=JSON), 413)


def test_a_form_over_the_upload_limit_is_413_and_nothing_is_saved(
    user: Any, client_500: Client, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    conversation = chat_services.start_conversation(user=user)
    response = client_500.post(f"/chat/c/{conversation.pk}/send", {"content": "x" * 20_000})
    _refused(response, 413)
    assert not Message.objects.filter(conversation=conversation).exists()


def test_an_id_beyond_the_database_range_is_400_not_500(client_500: Client) -> None:
    _refused(client_500.get("/api/memories/99999999999999999999/"), 400, 404)
    _refused(client_500.get("/chat/list?current=99999999999999999999"), 200, 400)
    _refused(client_500.get("/memory/learned?message=99999999999999999999"), 200, 400)


def test_invalid_json_is_400(client_500: Client) -> None:
    _refused(client_500.post("/api/memories/", "{not json", content_type=JSON))


def test_a_conversation_id_that_is_not_mine_stays_404(client_500: Client) -> None:
    assert client_500.get("/chat/c/999999/").status_code == 404
    assert Conversation.objects.count() == 0


# --- Faults: Redis away, PostgreSQL restarting, a model that hangs or cuts off ---


@pytest.fixture
def private_redis(settings: Any, tmp_path: Any) -> Iterator[stack.EmbeddedRedis]:
    """A Redis of this test's own (cache and broker), so stopping it breaks no other test."""
    redis = stack.EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = redis.start()
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
    # Connection and producer pools of its own for the private broker (Celery builds both
    # once, from the broker URL of the moment); the shared ones are put back afterwards.
    app: Any = celery_app
    saved = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app.conf.update(broker_url=url)
    app._pool = app.amqp._producer_pool = None
    try:
        yield redis
    finally:
        redis.stop()
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.update(broker_url=saved[0])
        app._pool, app.amqp._producer_pool = saved[1], saved[2]


def test_with_redis_stopped_a_message_is_still_sent_and_counted_in_process(
    user: Any, client_500: Client, private_redis: stack.EmbeddedRedis, settings: Any
) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    conversation = chat_services.start_conversation(user=user)
    private_redis.stop()

    statuses = [
        client_500.post(f"/chat/c/{conversation.pk}/send", {"content": f"Hi {n}"}).status_code
        for n in range(3)
    ]

    # Fails open to a per-process limit: chat works, and the limit still holds here.
    assert statuses == [200, 200, 429]
    assert list(
        Message.objects.filter(conversation=conversation, role="user").values_list(
            "content", flat=True
        )
    ) == ["Hi 0", "Hi 1"]


@pytest.mark.django_db(transaction=True)
def test_a_stream_whose_redis_stops_midway_still_ends_with_done_and_is_swept_later(
    user: Any, fake_llm: FakeLLM, private_redis: stack.EmbeddedRedis
) -> None:
    conversation = chat_services.start_conversation(user=user)
    message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content="Tell me a story"
    )
    pieces = [f"{n} " for n in range(12)]
    fake_llm.reply("".join(pieces), tokens=pieces, delay=0.05)

    async def stop_redis_after_the_first_token(tokens: list[str]) -> None:
        if len(tokens) == 1:
            await sync_to_async(private_redis.stop)()

    tokens, final = _stream(user, reply.pk, on_token=stop_redis_after_the_first_token)

    assert final is not None, "the stream ended with its done event"
    assert final.status == Message.Status.COMPLETE
    assert final.content == "".join(pieces) == "".join(tokens)
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE
    # The extraction could not be queued: the beat's sweep finds the message and queues it.
    swept = chat_services.unlearned_message_ids(older_than=timedelta(0), within=timedelta(hours=1))
    assert message.pk in swept


def test_stop_with_redis_away_still_stops_the_stream(
    user: Any, fake_llm: FakeLLM, private_redis: stack.EmbeddedRedis
) -> None:
    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content="Count"
    )
    private_redis.stop()
    fake_llm.hang(20)

    chat_services.request_stop(user=user, message_id=reply.pk)
    _tokens, final = _stream(user, reply.pk)

    assert final is not None
    assert final.status == Message.Status.STOPPED


def _stream(user: Any, message_id: int, *, on_token: Any = None) -> tuple[list[str], Any]:
    async def collect() -> tuple[list[str], Any]:
        tokens: list[str] = []
        final = None
        async for event in chat_services.stream_reply(user=user, message_id=message_id):
            if event.kind == "token":
                tokens.append(event.text)
                if on_token is not None:
                    await on_token(tokens)
            else:
                final = event.message
        return tokens, final

    return async_to_sync(collect)()


@pytest.mark.django_db(transaction=True)
def test_stop_is_seen_while_the_model_hangs_before_the_first_token(
    user: Any, fake_llm: FakeLLM, settings: Any
) -> None:
    # Were the stop noticed only when a token arrives, this reply would fail at the read
    # timeout instead (status FAILED, "took too long").
    settings.LLM_READ_TIMEOUT = 30
    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.hang(30)
    stopper = threading.Timer(
        0.5, lambda: chat_services.request_stop(user=user, message_id=reply.pk)
    )
    stopper.start()
    try:
        tokens, final = _stream(user, reply.pk)
    finally:
        stopper.cancel()

    assert tokens == []
    assert final is not None
    assert final.status == Message.Status.STOPPED
    assert final.error == ""
    # The upstream request was closed, not left hanging.
    assert fake_llm.wait_for_disconnects(1) or fake_llm.requests


def test_stop_requested_before_the_stream_starts_ends_it_at_once(
    user: Any, fake_llm: FakeLLM
) -> None:
    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(user=user, conversation_id=conversation.pk, content="Hi")
    fake_llm.hang(30)

    chat_services.request_stop(user=user, message_id=reply.pk)
    tokens, final = _stream(user, reply.pk)

    assert tokens == []
    assert final is not None and final.status == Message.Status.STOPPED


def test_a_stream_the_model_cuts_off_is_reported_as_cut_off(user: Any, fake_llm: FakeLLM) -> None:
    conversation = chat_services.start_conversation(user=user)
    _, reply = chat_services.send_message(user=user, conversation_id=conversation.pk, content="Go")
    fake_llm.cut_stream(2, "One two three four.")

    tokens, final = _stream(user, reply.pk)

    assert tokens == ["One ", "two "]
    assert final is not None and final.status == Message.Status.FAILED
    assert final.content == "One two "
    assert "cut off" in final.error
    assert "could not be reached" not in final.error


def _admin_sql(sql: str) -> None:
    """Run SQL on a connection of its own (autocommit), as an operator restarting the server."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params["dbname"] = "postgres"
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(sql)


def test_a_postgresql_restart_is_a_503_with_retry_after_then_the_app_serves_again(
    asgi_server: AsgiServer,
) -> None:
    # A real server: the test client keeps one connection across requests, a server does not.
    user: Any = UserFactory()
    _token, text = tokens.create_token(user=user, name="test")
    api = httpx.Client(
        base_url=asgi_server.url, headers={"Authorization": f"Bearer {text}"}, timeout=30
    )
    assert api.get("/api/memories/").status_code == 200  # the pool holds a connection now
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:  # the test's own connection (it flushes the tables)
        cursor.execute("SELECT pg_backend_pid()")
        (own_pid,) = cursor.fetchone()

    # A request waits up to DATABASE_POOL_TIMEOUT (60 s by default, so a brief restart or a
    # burst is waited out) before it is refused; this test waits 5 s of it.
    pool: Any = connection.pool  # type: ignore[attr-defined]  # PostgreSQL backend
    pool_timeout, pool.timeout = pool.timeout, 5.0
    # What a restart does: every connection is cut, and new ones are refused for a while.
    _admin_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    try:
        _admin_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid NOT IN (pg_backend_pid(), {own_pid})"
        )
        during = api.get("/api/memories/")
    finally:
        _admin_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        pool.timeout = pool_timeout

    assert during.status_code == 503
    assert during.headers["Retry-After"]
    assert "retry" in during.json()["detail"]
    after = api.get("/api/memories/")
    assert after.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_stopped_a_finished_turn_is_left_to_the_sweep(
    user: Any, fake_llm: FakeLLM, private_redis: stack.EmbeddedRedis, caplog: Any
) -> None:
    conversation = chat_services.start_conversation(user=user)
    message, reply = chat_services.send_message(
        user=user, conversation_id=conversation.pk, content="I keep bees"
    )
    private_redis.stop()

    _tokens, final = _stream(user, reply.pk)

    assert final is not None and final.status == Message.Status.COMPLETE
    assert "could not queue" in caplog.text  # the broker refused; the turn still ended
    assert message.pk in chat_services.unlearned_message_ids(
        older_than=timedelta(0), within=timedelta(hours=1)
    )
