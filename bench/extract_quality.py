"""Extraction quality with a real model on the public labeled set (tests/memory/labeled_extraction).

Run: `.venv/bin/python bench/extract_quality.py` from the repository root (`--cases N` for the
first N cases only, `--base-url URL` for another endpoint). It starts an embedded PostgreSQL
in `<data dir>/bench/pg` (unless DATABASE_URL is set) and, unless an endpoint is given,
llama.cpp's server with SmolLM2-135M on a free port, then says every case's turns as a new
person through the real extraction service (`chat.services.learn_from_message`), one request
at a time, and prints recall of the expected facts, junk, stale contradictions and
duplicates, with every miss and every junk memory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import common  # noqa: E402

DOMAIN = "extract-quality.bench.invalid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=0, help="only the first N cases")
    parser.add_argument("--base-url", default=os.environ.get("LLM_BASE_URL", ""))
    args = parser.parse_args()
    common.bootstrap()

    bench_db = common.BenchDatabase("bench")
    server = None
    started = time.perf_counter()
    try:
        bench_db.start()
        server = common.local_model(
            args.base_url, log_name="extract-quality-llm.log", model_setting="LLM_BACKGROUND_MODEL"
        )
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from accounts.models import User
        from tests.memory.labeled_extraction import CASES, Score, run_case, score_case

        call_command("migrate", interactive=False, verbosity=0)
        User.objects.filter(email__endswith="@" + DOMAIN).delete()
        cases = CASES[: args.cases] if args.cases else CASES
        print(common.machine_line())
        print(f"{common.load_line()} at the start")
        print(
            f"background model {settings.LLM_BACKGROUND_MODEL} at {settings.LLM_BASE_URL} "
            f"({'started here' if server else 'given'}); {len(cases)} cases; "
            f"setup {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        total = Score()
        salt = secrets.token_hex(3)
        began = time.perf_counter()
        for number, case in enumerate(cases):
            user = User.objects.create(email=f"case{number}-{salt}@{DOMAIN}")
            score_case(case, run_case(case, user), total)
        said = sum(1 for case in cases for turn in case.turns if turn.role == "user")
        print(total.line())
        print(total.details())
        print(f"{(time.perf_counter() - began) / max(said, 1):.1f} s per message")
        User.objects.filter(email__endswith="@" + DOMAIN).delete()
        common.close_django_connections()
    finally:
        if server is not None:
            server.stop()
        bench_db.stop()


if __name__ == "__main__":
    main()
