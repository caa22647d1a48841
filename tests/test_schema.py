"""The OpenAPI schema is the truth: schemathesis (all checks, all phases) finds no failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from accounts import tokens
from tests.conftest import AsgiServer
from tests.factories import UserFactory

# Bounded so the run takes a couple of minutes on a small machine; the seed makes it repeat.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "1313")


def test_schemathesis_finds_no_failure_in_the_api(
    asgi_server: AsgiServer, tmp_path: Path, settings: Any
) -> None:
    # Enough sends per minute that the rate limit (a documented 429) is not all it sees.
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1000
    user: Any = UserFactory()
    _token, text = tokens.create_token(user=user, name="schemathesis")
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{asgi_server.url}/api/schema/",
         "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", SEED,
         "--header", f"Authorization: Bearer {text}",
         # NUL cannot be stored in PostgreSQL text, and the API refuses it with a 400 (it says
         # so in its description); JSON Schema has no way to say "no NUL", so none is drawn.
         "--generation-allow-x00", "false",
         # Erasing the account mid-run would leave nothing to test.
         "--exclude-operation-id", "account_destroy",
         "--request-timeout", "30", "--workers", "1"],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
