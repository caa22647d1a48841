"""System checks that turn a missing pgvector into a clear instruction instead of a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import connections
from django.db.utils import OperationalError

PGVECTOR_HINT = (
    "Mnemo needs the pgvector extension. Install it on the database server "
    "(Debian/Ubuntu: `apt install postgresql-<version>-pgvector`; Docker: the `pgvector/pgvector` "
    "image; managed services: enable the `vector` extension), or unset DATABASE_URL to use "
    "the embedded PostgreSQL that ships with it."
)


@register(Tags.database)
def check_pgvector_available(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for alias in databases or []:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute(
                    "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
                )
                row = cursor.fetchone()
        except OperationalError as exc:
            errors.append(
                Error(
                    f"Cannot connect to the database '{alias}': {exc}".strip(),
                    hint="Start the stack with `make run`, or set DATABASE_URL.",
                    id="mnemo.E002",
                )
            )
            continue
        if row is None:
            errors.append(
                Error(
                    f"The PostgreSQL server behind '{alias}' has no pgvector extension.",
                    hint=PGVECTOR_HINT,
                    id="mnemo.E001",
                )
            )
    return errors
