"""Shared fixtures: the fake LLM over HTTP, users, clients, a real Celery worker and ASGI server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django_redis import get_redis_connection

from config import stack
from tests.factories import PASSWORD, UserFactory
from tests.fake_llm import FakeLLM


@pytest.fixture(scope="session")
def _fake_llm_server() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(autouse=True)
def fake_llm(_fake_llm_server: FakeLLM, settings: Any) -> Iterator[FakeLLM]:
    """Every test talks to a fresh-scripted fake OpenAI-compatible server, never a real one."""
    _fake_llm_server.reset()
    settings.LLM_BASE_URL = _fake_llm_server.base_url
    settings.LLM_CHAT_MODEL = "fake-chat"
    settings.LLM_BACKGROUND_MODEL = "fake-small"
    settings.LLM_MAX_RETRIES = 0
    yield _fake_llm_server
    _fake_llm_server.reset()


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    # Rate-limit counters and cached values must not leak from one test into the next.
    get_redis_connection("default").flushdb()
    yield


@pytest.fixture
def user(db: None) -> Any:
    return UserFactory()


@pytest.fixture
def other_user(db: None) -> Any:
    return UserFactory()


@pytest.fixture
def user_client(user: Any) -> Client:
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    return client


def _test_database_url() -> str:
    """The URL of the test database pytest-django created (for processes outside this one)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + settings.DATABASES["default"]["NAME"]))


@pytest.fixture
def worker_env(transactional_db: None, fake_llm: FakeLLM) -> dict[str, str]:
    """Environment for child processes (Celery workers) that share this test's services."""
    env = os.environ.copy()
    env.update(
        DATABASE_URL=_test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        LLM_BASE_URL=fake_llm.base_url,
        LLM_CHAT_MODEL="fake-chat",
        LLM_BACKGROUND_MODEL="fake-small",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    return env


class WorkerProcess:
    """A real `celery worker` process against the test database and Redis."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env = env
        self.name = name
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        from config.celery import app

        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "warning",
             "--concurrency", "1", "-n", f"{self.name}@%h", "--without-mingle",
             "--without-gossip"],
            env=self.env,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5) or []
            if any(name.startswith(f"{self.name}@") for reply in replies for name in reply):
                return self
            if self.process.poll() is not None:
                raise RuntimeError("the Celery worker exited during startup")
        raise TimeoutError("the Celery worker did not answer a ping within 60 s")

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool), as a crash or OOM would."""
        assert self.process is not None
        os.killpg(self.process.pid, 9)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def celery_worker(worker_env: dict[str, str]) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(worker_env, name=f"test-worker-{os.getpid()}").start()
    yield worker
    worker.stop()


class AsgiServer:
    """Uvicorn serving `config.asgi:application` from a thread of this process (test DB)."""

    def __init__(self) -> None:
        import uvicorn

        self.port = stack.free_port()
        config = uvicorn.Config(
            "config.asgi:application", host="127.0.0.1", port=self.port, log_level="warning",
            lifespan="off",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AsgiServer:
        self.thread.start()
        stack.wait_for_port("127.0.0.1", self.port, timeout=30)
        return self

    def stop(self) -> None:
        from django.db import connection

        self.server.should_exit = True
        self.thread.join(10)
        # The server's threads borrowed pooled connections; give them back before the test
        # database is flushed or dropped.
        connection.close_pool()  # type: ignore[attr-defined]  # PostgreSQL backend


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[AsgiServer]:
    server = AsgiServer().start()
    yield server
    server.stop()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (no browser download).

    Module-scoped: Playwright's sync API keeps an event loop running in this thread, which
    would stop other modules' tests from calling async code with `async_to_sync`.
    """
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    # Playwright's sync API keeps an event loop in this thread while it runs; Django's
    # async-unsafe guard would otherwise refuse the ORM calls tests and fixtures make meanwhile.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield instance
            instance.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser: Any, asgi_server: AsgiServer) -> Iterator[Any]:
    context = browser.new_context(base_url=asgi_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page: Any, name: str) -> None:
    """Keep a screenshot under screenshots/ (git-ignored) for a person to look at."""
    folder = stack.BASE_DIR / "screenshots"
    folder.mkdir(exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
