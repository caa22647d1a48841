"""`make run`: bring the whole system up on one machine, and take it all down on Ctrl-C.

Starts what is not configured externally (embedded PostgreSQL + pgvector, Redis, a local
OpenAI-compatible model server), applies migrations, then runs the Celery worker and beat and
the ASGI server as child processes that receive the services' URLs through the environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from config import stack

BASE_DIR = stack.BASE_DIR
PYTHON = sys.executable


def log(message: str) -> None:
    print(f"[mnemo] {message}", flush=True)


class Supervisor:
    def __init__(self) -> None:
        self.root = stack.data_dir()
        self.env = os.environ.copy()
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.postgres: stack.EmbeddedPostgres | None = None
        self.redis: stack.EmbeddedRedis | None = None
        self.local_llm: stack.LocalModelServer | None = None
        self.children: list[tuple[str, subprocess.Popen]] = []
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
            self.start_local_llm()
        else:
            log(f"using the LLM endpoint at {self.env['LLM_BASE_URL']}")
        keys = ("DATABASE_URL", "REDIS_URL", "LLM_BASE_URL", "LLM_CHAT_MODEL")
        stack.services_env_path(self.root).write_text(
            "".join(f"{key}={self.env[key]}\n" for key in keys if self.env.get(key))
        )

    def start_local_llm(self) -> None:
        try:
            model = stack.local_model_path()
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        log(f"starting the local model server ({model.name}) …")
        self.local_llm = stack.LocalModelServer(
            model=model,
            log_path=self.root / "llm.log",
            context_tokens=int(os.environ.get("LLM_CONTEXT_TOKENS", "4096")),
        )
        self.env["LLM_BASE_URL"] = self.local_llm.start()
        self.env.setdefault("LLM_CHAT_MODEL", stack.LOCAL_MODEL_ALIAS)

    # --- processes ---

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        # Each child in its own session: Ctrl-C reaches only the supervisor, which then stops
        # the children in order (web first, the database last).
        process = subprocess.Popen(args, cwd=BASE_DIR, env=self.env, start_new_session=True)
        self.children.append((name, process))
        return process

    def manage(self, *args: str) -> None:
        subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=True)

    def start_app(self, host: str, port: int) -> None:
        log("applying migrations …")
        self.manage("migrate", "--noinput", "-v", "0")
        self.spawn(
            "worker",
            [PYTHON, "-m", "celery", "-A", "config", "worker", "-l", "info",
             "--concurrency", os.environ.get("CELERY_CONCURRENCY", "2"), "-n", "mnemo-worker@%h"],
        )  # fmt: skip
        self.spawn(
            "beat",
            [PYTHON, "-m", "celery", "-A", "config", "beat", "-l", "info",
             "-s", str(self.root / "celerybeat-schedule")],
        )  # fmt: skip
        web = self.spawn(
            "web",
            [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", host,
             "--port", str(port), "--no-access-log", "--timeout-graceful-shutdown", "5"],
        )  # fmt: skip
        stack.wait_for_port(host, port, timeout=60, process=web)

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log("stopping …")
        for _name, process in reversed(self.children):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.local_llm:
            self.local_llm.stop()
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()
        stack.services_env_path(self.root).unlink(missing_ok=True)
        log("stopped.")

    def watch(self) -> int:
        """Block until Ctrl-C/SIGTERM, or until a child dies (then stop everything)."""
        while True:
            for name, process in self.children:
                if process.poll() is not None:
                    log(f"{name} exited with code {process.returncode}; stopping everything")
                    return 1
            time.sleep(0.5)


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
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
        supervisor.start_app(host, port)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"  # noqa: S104
        log(f"up in {time.monotonic() - started:.1f} s")
        print(
            f"\n  Mnemo is running at {url}\n"
            f"  Create your account at {url}accounts/signup/ (any email, no verification),\n"
            f"  then sign in at {url}accounts/login/.\n"
            f"  Health: {url}healthz   API docs: {url}api/docs/\n"
            "  Password-reset emails are printed here. Press Ctrl-C to stop.\n",
            flush=True,
        )
        return supervisor.watch()
    except KeyboardInterrupt:
        return 0
    except subprocess.CalledProcessError as exc:
        log(f"a setup step failed ({' '.join(map(str, exc.cmd[1:3]))}); see the output above")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
