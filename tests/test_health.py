from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from config import stack
from config.celery import app as celery_app
from tests.fake_llm import FakeLLM


def test_healthz_is_200_when_every_part_is_up(client: Client, celery_worker: Any) -> None:
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"]["pgvector"].startswith("0.")
    assert checks["redis"]["ok"] and checks["broker"]["ok"]
    assert any(name.startswith("test-worker-") for name in checks["workers"]["workers"])
    assert checks["llm"]["models"] == ["fake-chat", "fake-small"]


@pytest.mark.django_db
def test_healthz_is_503_without_a_worker(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_healthz_is_503_when_the_llm_fails(client: Client, fake_llm: FakeLLM) -> None:
    fake_llm.fail(500, endpoint="models")
    checks = client.get("/healthz").json()["checks"]
    assert checks["llm"]["ok"] is False
    assert "500" in checks["llm"]["error"]


@pytest.mark.django_db
def test_healthz_is_503_when_redis_stops(client: Client, settings: Any, tmp_path: Path) -> None:
    redis = stack.EmbeddedRedis(tmp_path, persistent=False)
    url = redis.start()
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": url},
    }
    old_broker = celery_app.conf.broker_url
    celery_app.conf.update(broker_url=url)
    try:
        before = client.get("/healthz").json()["checks"]
        assert before["redis"]["ok"] is True
        assert before["broker"]["ok"] is True

        redis.stop()

        response = client.get("/healthz")
        assert response.status_code == 503
        after = response.json()["checks"]
        assert after["redis"]["ok"] is False
        assert after["broker"]["ok"] is False
        assert after["database"]["ok"] is True
    finally:
        redis.stop()
        celery_app.conf.update(broker_url=old_broker)
