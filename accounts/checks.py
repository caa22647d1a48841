"""System checks that turn a missing pgvector into a clear instruction instead of a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
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


# What Django's security.W001-W003 look for by dotted path. config/middleware.py installs
# subclasses that run in the event loop, so the protection is checked by class instead.
PROTECTIVE_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
)


@register(Tags.security)
def check_protective_middleware(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Each of Django's protective middleware, or a subclass of it, is installed."""
    from django.utils.module_loading import import_string

    installed = [import_string(path) for path in settings.MIDDLEWARE]
    return [
        Error(
            f"No {path} (or a subclass) in MIDDLEWARE.",
            hint="Add it back: it sets security headers or checks CSRF tokens.",
            id="mnemo.E011",
        )
        for path in PROTECTIVE_MIDDLEWARE
        if not any(
            issubclass(cls, import_string(path)) for cls in installed if isinstance(cls, type)
        )
    ]
