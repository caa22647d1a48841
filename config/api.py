"""Project-wide API plumbing: domain errors become clear 4xx JSON, never 500s."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # A missing object is always the caller's id that is not theirs (or gone).
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "Not found."}, status=404)
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message}, status=exc.status)
    return drf_exception_handler(exc, context)
