"""Middleware: bad text is refused where it enters, and an outage is a 503 to retry, not a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import resolve_url
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.errors import text_problem

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
DATA_ERROR_MESSAGE = "A value in the request is out of range or not valid."
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def refusal(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """A 4xx/5xx with a message: JSON for the API, plain text (shown by the page) elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _values(pairs: Iterable[tuple[str, list[str]]]) -> Iterable[str]:
    for key, values in pairs:
        yield key
        yield from values


class BadInputMiddleware:
    """400 for a NUL byte or invalid text in any query or form field, 413 for a body too big.

    PostgreSQL cannot store NUL in text and a lone surrogate cannot be encoded, so such a value
    would fail deep inside a query; refusing it here covers every page and API view at once.
    JSON bodies are checked by the API's parser (config.api.StrictJSONParser).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            problem = self._problem(request)
        except RequestDataTooBig:
            return refusal(request, "The request is too large.", 413)
        except (TooManyFieldsSent, MultiPartParserError):
            return refusal(request, "The form could not be read.", 400)
        if problem:
            return refusal(request, problem, 400)
        return self.get_response(request)

    def _problem(self, request: HttpRequest) -> str | None:
        for value in _values(request.GET.lists()):
            if problem := text_problem(value):
                return f"The address has {problem}."
        if request.method == "POST" and request.content_type in FORM_TYPES:
            for value in _values(request.POST.lists()):
                if problem := text_problem(value):
                    return f"The form has {problem}. Remove it and send again."
        return None


class ServiceOutageMiddleware(MiddlewareMixin):
    """Turn a database or Redis that is away (or a saturated pool) into 503 + Retry-After,
    and a value the database refuses into a 400.

    A PostgreSQL restart closes every pooled connection and refuses new ones for a moment;
    Redis may restart too. The request is safe to retry, so the client is told when.
    """

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, DataError):
            # A value the database cannot hold (an id past 2^63, say): the caller's input.
            return refusal(request, DATA_ERROR_MESSAGE, 400)
        if not is_outage(exc):
            return None
        logger.warning("service unavailable for %s: %s", request.path, exc)
        response = refusal(
            request, "Mnemo is busy or restarting. Please retry in a few seconds.", 503
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


SIGNED_OUT_MESSAGE = (
    "You are signed out. Sign in again (in another tab, to keep this page); "
    "what you typed is still here."
)


class SignedOutHtmxMiddleware:
    """A background htmx request from a signed-out page gets 401 and a message, not the
    sign-in page: htmx would follow the redirect and swap the sign-in form into the sidebar
    (or a message's slot). Full page loads still redirect to sign in as usual.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if self.async_mode:
            return self.__acall__(request)  # type: ignore[return-value]
        return self.signed_out(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        return self.signed_out(request, await self.get_response(request))  # type: ignore[misc]

    @staticmethod
    def signed_out(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.status_code != 302 or not request.headers.get("HX-Request"):
            return response
        login = str(resolve_url(settings.LOGIN_URL))
        if response.get("Location", "").split("?", 1)[0] != login:
            return response
        return refusal(request, SIGNED_OUT_MESSAGE, 401)


def is_outage(exc: BaseException) -> bool:
    """True for an error that means a backing service is briefly unavailable."""
    from django_redis.exceptions import ConnectionInterrupted

    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionInterrupted)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Something went wrong on our side."}, status=500)
    return defaults.server_error(request)
