from __future__ import annotations

import os
import secrets
import subprocess
import sys
from typing import Any

from config import stack


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # A deployment has none of the test session's switches (browser tests set one).
    base = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=stack.BASE_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_in_production_mode() -> None:
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        MNEMO_PRODUCTION="true",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="mnemo.example.com",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_mode_refuses_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=stack.BASE_DIR,
        env={**env, "MNEMO_PRODUCTION": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_local_secret_key_is_generated_once_and_kept(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    first = stack.local_secret_key(root)
    assert len(first) >= 50
    assert stack.local_secret_key(root) == first
    assert (root / "secret_key").stat().st_mode & 0o077 == 0


def test_migrate_explains_a_missing_pgvector(tmp_path: object) -> None:
    # The machine's own PostgreSQL 15 has no pgvector: the exact case an operator meets.
    result = _manage(
        "check",
        "--database",
        "default",
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres",
    )
    if "Cannot connect" in result.stderr:
        import pytest

        pytest.skip("no PostgreSQL without pgvector reachable on 127.0.0.1:5432")
    assert result.returncode != 0
    assert "pgvector" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_openapi_schema_is_valid_and_unambiguous() -> None:
    result = _manage("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)
    assert result.returncode == 0, result.stderr


def test_removing_a_protective_middleware_is_an_error_not_silenced(settings: Any) -> None:
    # Django's own W001-W003 look for its dotted paths and are silenced for our subclasses;
    # mnemo.E011 checks by class instead.
    from accounts.checks import check_protective_middleware

    assert check_protective_middleware() == []
    settings.MIDDLEWARE = [
        path for path in settings.MIDDLEWARE if not path.endswith("CsrfViewMiddleware")
    ]
    errors = check_protective_middleware()

    assert [error.id for error in errors] == ["mnemo.E011"]
    assert "django.middleware.csrf.CsrfViewMiddleware" in errors[0].msg
