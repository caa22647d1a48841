"""Early pytest plugin: start the real services for the test run before Django loads settings.

PostgreSQL + pgvector (embedded, or `DATABASE_URL`) and a fresh Redis (embedded on a free
port, or `REDIS_URL`) are reached through the same environment variables the app reads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator
from typing import Any

import pytest

from config import stack

_started: list[Any] = []


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: Any, args: Any
) -> Generator[None]:
    # Runs before pytest-django's own hook, which imports the settings.
    root = stack.data_dir() / "test"
    root.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("DATABASE_URL"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on servers
            postgres = stack.EmbeddedPostgres(root / "pg")
            os.environ["DATABASE_URL"] = postgres.start()
        _started.append(postgres)
    if not os.environ.get("REDIS_URL"):
        redis = stack.EmbeddedRedis(root / "redis", persistent=False)
        os.environ["REDIS_URL"] = redis.start()
        _started.append(redis)
    # The tests script the LLM themselves; never reach a developer's real endpoint.
    os.environ["LLM_BASE_URL"] = ""
    os.environ["LLM_BACKGROUND_BASE_URL"] = ""
    os.environ.pop("MNEMO_PRODUCTION", None)
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _started:
        service = _started.pop()
        if isinstance(service, stack.EmbeddedPostgres):
            service.stop(only_if_started_here=True)
        else:
            service.stop()
