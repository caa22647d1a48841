"""The embedded stack's services: the local model server gets only its own arguments."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from config import stack


@pytest.fixture
def model_path() -> Path:
    pytest.importorskip("llama_cpp", reason="`make test` installs the local model server")
    return stack.local_model_path()


def test_the_model_server_listens_on_its_own_port_whatever_port_and_host_say(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `PORT=8102 make run`: llama_cpp.server reads PORT and HOST over its --port/--host, and
    # its settings read any variable named like an option (MODEL, N_CTX, API_KEY…).
    web_port = stack.free_port()
    monkeypatch.setenv("PORT", str(web_port))
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("API_KEY", "would-lock-out-every-client")
    monkeypatch.setenv("N_CTX", "not-a-number")
    server = stack.LocalModelServer(
        model=model_path, log_path=tmp_path / "llm.log", context_tokens=512
    )
    try:
        url = server.start(timeout=180)
        assert server.port != web_port
        models = httpx.get(f"{url}/models", timeout=30).json()
        assert [m["id"] for m in models["data"]] == [stack.LOCAL_MODEL_ALIAS]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{web_port}/v1/models", timeout=5)
    finally:
        server.stop()


def test_a_model_server_that_fails_names_its_log_and_shows_its_last_lines(
    tmp_path: Path,
) -> None:
    server = stack.LocalModelServer(model=tmp_path / "missing.gguf", log_path=tmp_path / "llm.log")
    if "llama_cpp" not in sys.modules:
        pytest.importorskip("llama_cpp", reason="`make test` installs the local model server")
    with pytest.raises(stack.ServiceFailed) as failed:
        server.start(timeout=120)
    message = str(failed.value)
    assert str(tmp_path / "llm.log") in message
    assert "missing.gguf" in message  # the server's own complaint, from its log
    assert server.process is not None and server.process.poll() is not None


def test_the_model_server_environment_keeps_nothing_it_would_read_as_a_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("PORT", "HOST", "MODEL", "API_KEY", "CONFIG_FILE", "DATABASE_URL"):
        monkeypatch.setenv(name, "x")
    env = stack.LocalModelServer(model=tmp_path / "m.gguf", log_path=tmp_path / "l").environment()
    assert "PATH" in env
    assert not {"PORT", "HOST", "MODEL", "API_KEY", "CONFIG_FILE", "DATABASE_URL"} & set(env)
