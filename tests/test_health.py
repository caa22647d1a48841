"""`/healthz`: up or down for anyone, details for staff; never held down by a busy model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from config import health, stack
from config.celery import app as celery_app
from tests.factories import PASSWORD, UserFactory
from tests.fake_llm import FakeLLM


@pytest.fixture
def staff_client(db: None) -> Client:
    staff = UserFactory(is_staff=True)
    client = Client()
    assert client.login(email=staff.email, password=PASSWORD)
    return client


def test_anonymous_healthz_says_only_ok_when_every_part_is_up(
    client: Client, celery_worker: Any
) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}  # no versions, host names or URLs


def test_staff_see_every_checks_details(staff_client: Client, celery_worker: Any) -> None:
    response = staff_client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"]["pgvector"].startswith("0.")
    assert checks["redis"]["ok"] and checks["broker"]["ok"]
    assert any(name.startswith("test-worker-") for name in checks["workers"]["workers"])
    assert checks["llm"]["models"] == ["fake-chat", "fake-small"]


def test_a_signed_in_person_who_is_not_staff_sees_only_up_or_down(
    user_client: Client, celery_worker: Any
) -> None:
    assert user_client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_is_503_without_a_worker(client: Client, staff_client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down"}
    checks = staff_client.get("/healthz").json()["checks"]
    assert checks["workers"]["ok"] is False
    assert checks["database"]["ok"] is True


@pytest.mark.django_db
def test_healthz_is_503_when_the_llm_fails(staff_client: Client, fake_llm: FakeLLM) -> None:
    fake_llm.fail(500, endpoint="models")
    response = staff_client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["llm"]["ok"] is False
    assert "500" in checks["llm"]["error"]


@pytest.mark.django_db
def test_a_busy_model_that_accepts_the_connection_counts_as_up(
    staff_client: Client, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # llama.cpp answers /v1/models only between two generations: a backlog of background
    # work must not hold health at 503 while the model is working through it.
    monkeypatch.setattr(health, "LLM_CHECK_TIMEOUT", 0.3)
    fake_llm.hang(2, endpoint="models")
    checks = staff_client.get("/healthz").json()["checks"]
    assert checks["llm"]["ok"] is True
    assert checks["llm"]["busy"] is True


@pytest.mark.django_db
def test_an_llm_endpoint_nobody_listens_on_is_down(staff_client: Client, settings: Any) -> None:
    settings.LLM_BASE_URL = f"http://127.0.0.1:{stack.free_port()}/v1"
    checks = staff_client.get("/healthz").json()["checks"]
    assert checks["llm"]["ok"] is False
    assert "LLMUnavailable" in checks["llm"]["error"]


@pytest.mark.django_db
def test_a_separate_background_endpoint_is_checked_too(staff_client: Client, settings: Any) -> None:
    settings.LLM_BACKGROUND_BASE_URL = f"http://127.0.0.1:{stack.free_port()}/v1"
    checks = staff_client.get("/healthz").json()["checks"]
    assert checks["llm"]["ok"] is False
    assert checks["llm"]["background"]["ok"] is False
    assert checks["llm"]["models"] == ["fake-chat", "fake-small"]  # chat itself is fine


@pytest.mark.django_db
def test_healthz_is_503_when_redis_stops(
    staff_client: Client, settings: Any, tmp_path: Path
) -> None:
    redis = stack.EmbeddedRedis(tmp_path, persistent=False)
    url = redis.start()
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": url},
    }
    old_broker = celery_app.conf.broker_url
    celery_app.conf.update(broker_url=url)
    try:
        before = staff_client.get("/healthz").json()["checks"]
        assert before["redis"]["ok"] is True
        assert before["broker"]["ok"] is True

        redis.stop()

        response = staff_client.get("/healthz")
        assert response.status_code == 503
        after = response.json()["checks"]
        assert after["redis"]["ok"] is False
        assert after["broker"]["ok"] is False
        assert after["database"]["ok"] is True
    finally:
        redis.stop()
        celery_app.conf.update(broker_url=old_broker)


@pytest.mark.django_db
def test_a_503_is_an_answer_not_an_error_line_in_the_log(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="django.request"):
        assert client.get("/healthz").status_code == 503  # no worker in this test
    assert not [r for r in caplog.records if r.name == "django.request"]
