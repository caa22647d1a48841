"""Project-wide API plumbing: domain errors become clear 4xx JSON, never 500s."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Services raise domain exceptions carrying an HTTP-ish `status` and a `message` meant for
    # people; a missing object is always the caller's id that is not theirs (or gone).
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "Not found."}, status=404)
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None)
    if isinstance(status, int) and 400 <= status < 500 and isinstance(message, str):
        return Response({"detail": message}, status=status)
    return drf_exception_handler(exc, context)
