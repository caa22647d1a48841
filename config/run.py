"""`make run`: bring the whole system up on one machine, keep it up, and take it down on Ctrl-C.

Starts what is not configured externally (embedded PostgreSQL + pgvector, Redis, two local
OpenAI-compatible model servers: one for chat, one for background work), applies migrations,
then runs the Celery worker and beat and the ASGI server (one web process per core) as child
processes that receive the services' URLs through the environment. A child that dies is
restarted with backoff and the restart is logged; only Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from config import stack

BASE_DIR = stack.BASE_DIR
PYTHON = sys.executable

# Restart backoff: 1 s, 2 s, 4 s … up to a minute; a child that ran this long before dying
# starts again from the shortest delay.
BACKOFF_MAX = 60.0
STABLE_AFTER = 60.0


def log(message: str) -> None:
    print(f"[mnemo] {message}", flush=True)


def web_concurrency() -> int:
    """Web processes: WEB_CONCURRENCY, else one per core (a process uses one core)."""
    configured = os.environ.get("WEB_CONCURRENCY", "").strip()
    if configured:
        if not configured.isdigit():
            raise SystemExit(f"WEB_CONCURRENCY must be a whole number, not {configured!r}")
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@dataclass
class Child:
    """A supervised process: started again with backoff whenever it dies."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path | None = None  # None: its output goes to the terminal
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> subprocess.Popen:
        output: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self._log_file is None or self._log_file.closed:
                self._log_file = open(self.log_path, "ab")  # noqa: SIM115  # kept while it runs
            output = self._log_file
        # Each child in its own session: Ctrl-C reaches only the supervisor, which then stops
        # the children in order (web first, the database last).
        self.process = subprocess.Popen(
            self.args,
            cwd=BASE_DIR,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        return self.process

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def where(self) -> str:
        return f"; log: {self.log_path}" if self.log_path else ""

    def schedule_restart(self) -> None:
        """Called once when the child is found dead: log it and pick when to start it again."""
        now = time.monotonic()
        if now - self.started_at >= STABLE_AFTER:
            self.backoff = 1.0
        code = self.exited()
        killed = code is not None and code < 0
        how = f"was killed by signal {-(code or 0)}" if killed else f"exited ({code})"
        log(f"{self.name} {how}; restarting it in {self.backoff:.0f} s{self.where()}")
        self.restart_at = now + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._log_file is not None:
            self._log_file.close()


class Supervisor:
    def __init__(self) -> None:
        self.root = stack.data_dir()
        self.env = os.environ.copy()
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.postgres: stack.EmbeddedPostgres | None = None
        self.redis: stack.EmbeddedRedis | None = None
        self.children: list[Child] = []
        self.stopping = False

    # --- services ---

    def start_services(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.env.get("DATABASE_URL"):
            log("starting embedded PostgreSQL + pgvector …")
            self.postgres = stack.EmbeddedPostgres(self.root / "pg")
            self.env["DATABASE_URL"] = self.postgres.start()
        else:
            log("using DATABASE_URL")
        if not self.env.get("REDIS_URL"):
            log("starting embedded Redis …")
            self.redis = stack.EmbeddedRedis(self.root / "redis")
            self.env["REDIS_URL"] = self.redis.start()
        else:
            log("using REDIS_URL")
        if not self.env.get("LLM_BASE_URL"):
            self.start_local_models()
        else:
            log(f"using the LLM endpoint at {self.env['LLM_BASE_URL']}")
        self.write_services_env()

    def write_services_env(self) -> None:
        """Record the services' URLs for `manage.py` (shell, createsuperuser) while we run."""
        keys = (
            "DATABASE_URL",
            "REDIS_URL",
            "LLM_BASE_URL",
            "LLM_BACKGROUND_BASE_URL",
            "LLM_CHAT_MODEL",
        )
        path = stack.services_env_path(self.root)
        # Owner-only: an external DATABASE_URL may carry a password.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{key}={self.env[key]}\n" for key in keys if self.env.get(key)))

    def start_local_models(self) -> None:
        try:
            model = stack.local_model_path()
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        context = int(os.environ.get("LLM_CONTEXT_TOKENS", "4096"))
        # Two servers of the same small model (SmolLM2-135M: ~100 MB each): llama.cpp's server
        # runs one request at a time, so a person's reply would otherwise wait behind (or,
        # with its default settings, be cut off by) extraction, titles and summaries.
        servers = {
            "chat": stack.LocalModelServer(
                model=model,
                log_path=self.root / "llm.log",
                context_tokens=context,
                name="the local model server (chat)",
            )
        }
        if not self.env.get("LLM_BACKGROUND_BASE_URL"):
            servers["background"] = stack.LocalModelServer(
                model=model,
                log_path=self.root / "llm-background.log",
                context_tokens=context,
                threads=1,
                name="the local model server (background)",
            )
        log(f"starting the local model server{'s' if len(servers) > 1 else ''} ({model.name}) …")
        started: list[tuple[stack.LocalModelServer, Child]] = []
        for role, server in servers.items():
            server.port = stack.free_port()
            child = Child(
                f"model server ({role})", server.command(), server.environment(), server.log_path
            )
            child.start()
            self.children.append(child)
            started.append((server, child))
        for server, child in started:
            assert child.process is not None
            try:
                stack.wait_for_port("127.0.0.1", server.port, timeout=120, process=child.process)
            except (RuntimeError, TimeoutError) as exc:
                raise stack.ServiceFailed(server.name, str(exc), server.log_path) from None
        self.env["LLM_BASE_URL"] = servers["chat"].url
        if "background" in servers:
            self.env["LLM_BACKGROUND_BASE_URL"] = servers["background"].url
        self.env.setdefault("LLM_CHAT_MODEL", stack.LOCAL_MODEL_ALIAS)

    # --- processes ---

    def manage(self, *args: str) -> None:
        subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=True)

    def add(self, name: str, args: list[str], log_path: Path | None = None) -> Child:
        child = Child(name, args, self.env, log_path)
        child.start()
        self.children.append(child)
        return child

    def start_app(self, host: str, port: int, workers: int) -> None:
        log("applying migrations …")
        self.manage("migrate", "--noinput", "-v", "0")
        # Worker and beat log to files under the data folder: the terminal keeps the URL,
        # restarts and the emails the web process prints.
        self.add(
            "worker",
            [PYTHON, "-m", "celery", "-A", "config", "worker", "-l", "info",
             "--concurrency", os.environ.get("CELERY_CONCURRENCY", "2"), "-n", "mnemo-worker@%h"],
            self.root / "worker.log",
        )  # fmt: skip
        self.add(
            "beat",
            [PYTHON, "-m", "celery", "-A", "config", "beat", "-l", "info",
             "-s", str(self.root / "celerybeat-schedule")],
            self.root / "beat.log",
        )  # fmt: skip
        log(f"starting the web server ({workers} process{'es' if workers > 1 else ''}) …")
        # Django has no ASGI lifespan support: off, uvicorn does not warn about it.
        web = self.add(
            "web",
            [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", host,
             "--port", str(port), "--workers", str(workers), "--lifespan", "off",
             "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5"],
        )  # fmt: skip
        assert web.process is not None
        stack.wait_for_port(host, port, timeout=60, process=web.process)

    def wait_until_healthy(self, url: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}healthz", timeout=10).status_code == 200:
                    return True
            self.check_children()
            time.sleep(0.5)
        return False

    def check_children(self) -> None:
        """Restart, with backoff, any child that died."""
        now = time.monotonic()
        for child in self.children:
            if self.stopping or child.exited() is None:
                continue
            if child.restart_at is None:
                child.schedule_restart()
            elif now >= child.restart_at:
                child.restarts += 1
                child.start()
                log(f"{child.name} restarted (restart #{child.restarts})")

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log("stopping …")
        for child in reversed(self.children):
            child.terminate()
        for child in reversed(self.children):
            child.wait(timeout=15)
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()
        stack.services_env_path(self.root).unlink(missing_ok=True)
        log("stopped.")

    def watch(self) -> int:
        """Keep every child running until Ctrl-C or SIGTERM."""
        while True:
            self.check_children()
            if self.redis and self.redis.process and self.redis.process.poll() is not None:
                log("Redis exited; restarting it on the same port")
                try:
                    self.redis.start()
                except stack.ServiceFailed as exc:
                    log(str(exc))
                    time.sleep(5)  # then try again
            time.sleep(0.5)


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    workers = web_concurrency()
    supervisor = Supervisor()

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background sets SIGINT to "ignore",
    # and Python then leaves it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    started = time.monotonic()
    try:
        supervisor.start_services()
        supervisor.start_app(host, port, workers)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"  # noqa: S104
        healthy = supervisor.wait_until_healthy(url)
        state = "up" if healthy else "started, not healthy yet"
        log(f"{state} in {time.monotonic() - started:.1f} s; logs in {supervisor.root}/*.log")
        # Printed last, after everything else has started, so that nothing buries it.
        print(
            f"\n  Mnemo is running at {url}\n"
            f"  Create your account at {url}accounts/signup/ (any email, no verification),\n"
            f"  then sign in at {url}accounts/login/.\n"
            f"  Health: {url}healthz   API docs: {url}api/docs/\n"
            "  Admin: `make manage ARGS=createsuperuser`, then /admin/.\n"
            "  Password-reset emails are printed here. Press Ctrl-C to stop.\n",
            flush=True,
        )
        return supervisor.watch()
    except KeyboardInterrupt:
        return 0
    except stack.ServiceFailed as exc:
        log(str(exc))
        return 1
    except subprocess.CalledProcessError as exc:
        log(f"a setup step failed ({' '.join(map(str, exc.cmd[1:3]))}); see the output above")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
