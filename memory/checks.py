"""System checks for memory settings whose typo would quietly weaken a privacy rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register()
def check_local_only_default(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """MEMORY_LOCAL_ONLY_DEFAULT names only known kinds and categories: "helath" would
    otherwise keep nothing local, silently."""
    from memory.exposure import KEY_NAMES

    unknown = [k for k in settings.MEMORY_LOCAL_ONLY_DEFAULT if k.strip() not in KEY_NAMES]
    if not unknown:
        return []
    return [
        Error(
            f"MEMORY_LOCAL_ONLY_DEFAULT names {', '.join(repr(k) for k in unknown)}, which "
            "is not a memory kind or category.",
            hint=f"Use any of {', '.join(KEY_NAMES)} (comma-separated), or leave it empty.",
            id="mnemo.E010",
        )
    ]
