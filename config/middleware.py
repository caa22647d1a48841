"""Middleware: a saturated database pool is a 503 to retry, not a 500."""

from __future__ import annotations

from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin


class DatabaseBusyMiddleware(MiddlewareMixin):
    """Turn "no pooled connection within the timeout" into 503 + Retry-After."""

    def __init__(self, get_response: Callable) -> None:
        super().__init__(get_response)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, OperationalError) and type(cause).__name__ == "PoolTimeout":
            response = JsonResponse(
                {"detail": "Mnemo is busy right now. Please retry in a few seconds."}, status=503
            )
            response["Retry-After"] = "5"
            return response
        return None
