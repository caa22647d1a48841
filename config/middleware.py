"""Middleware: bad text is refused where it enters, an outage is a 503 to retry, not a 500,
and Django's own middleware runs in the event loop under ASGI instead of in worker threads."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from csp import middleware as csp_middleware
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages_middleware
from django.contrib.sessions import middleware as sessions_middleware
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware import clickjacking, common, csrf, security
from django.shortcuts import resolve_url
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from whitenoise.middleware import WhiteNoiseMiddleware as WhiteNoiseBase

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


class _Inline:
    """Sync and async middleware whose work is CPU only: under ASGI it runs in the event loop
    and costs no trip to a worker thread. `before` may answer instead of the view; `after`
    may replace the view's answer."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return self.after(request, self.before(request) or self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        return self.after(request, self.before(request) or await self.get_response(request))

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response


class BadInputMiddleware(_Inline):
    """400 for a NUL byte or invalid text in any query or form field, 413 for a body too big.

    PostgreSQL cannot store NUL in text and a lone surrogate cannot be encoded, so such a value
    would fail deep inside a query; refusing it here covers every page and API view at once.
    JSON bodies are checked by the API's parser (config.api.StrictJSONParser). The check is CPU
    only (the body is already in memory).
    """

    def before(self, request: HttpRequest) -> HttpResponse | None:
        try:
            problem = self._problem(request)
        except RequestDataTooBig:
            return refusal(request, "The request is too large.", 413)
        except (TooManyFieldsSent, MultiPartParserError):
            return refusal(request, "The form could not be read.", 400)
        if problem:
            return refusal(request, problem, 400)
        return None

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


class SignedOutHtmxMiddleware(_Inline):
    """A background htmx request from a signed-out page gets 401 and a message, not the
    sign-in page: htmx would follow the redirect and swap the sign-in form into the sidebar
    (or a message's slot). Full page loads still redirect to sign in as usual.
    """

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
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


# --- Django's middleware, in the event loop under ASGI ---
#
# Under ASGI, Django runs each hook of a `MiddlewareMixin` middleware (process_request,
# process_view, process_response) in a worker thread: a dozen thread trips for every request
# with this project's list, and a sync-only middleware (WhiteNoise) put the whole chain in a
# thread and back. Those trips were about 30 % of the server's CPU under 500 concurrent
# streams (bench/chat.py, py-spy). The hooks below only read and write the request and
# response (headers, cookies, lazy objects), so they run in the event loop; the few cases
# that may touch the database (saving a changed session, storing messages) still go to a
# thread. Under WSGI and in the test client (sync) each behaves exactly as Django's own.


class _InEventLoop:
    """Mixin for a MiddlewareMixin subclass: its hooks run inline in async mode."""

    async_mode: bool

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        if self.async_mode and hasattr(self, "process_view"):
            # Django wraps a sync process_view in a thread trip; an async one it awaits.
            sync_view_hook = getattr(self, "process_view")  # noqa: B009

            async def process_view(*args: Any) -> Any:
                return sync_view_hook(*args)

            setattr(self, "process_view", process_view)  # noqa: B010

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)  # type: ignore[misc]

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        hooks: Any = self
        response = hooks.process_request(request) if hasattr(self, "process_request") else None
        response = response or await hooks.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(hooks.process_response)(request, response)
            else:
                response = hooks.process_response(request, response)
        return response

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return False


class SecurityMiddleware(_InEventLoop, security.SecurityMiddleware):
    pass


class CommonMiddleware(_InEventLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_InEventLoop, csrf.CsrfViewMiddleware):
    pass


class AuthenticationMiddleware(_InEventLoop, auth_middleware.AuthenticationMiddleware):
    pass  # only sets lazy `request.user`: the user is read where it is used


class XFrameOptionsMiddleware(_InEventLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class CSPMiddleware(_InEventLoop, csp_middleware.CSPMiddleware):
    pass


class SessionMiddleware(_InEventLoop, sessions_middleware.SessionMiddleware):
    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        # Saving writes to the session store; deciding not to is in memory.
        session: Any = getattr(request, "session", None)
        if session is None:
            return False
        return bool(session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(_InEventLoop, messages_middleware.MessageMiddleware):
    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        # Only storing messages may touch the session (and so the database).
        storage: Any = getattr(request, "_messages", None)
        return storage is not None and bool(storage.used or storage.added_new)


class WhiteNoiseMiddleware(WhiteNoiseBase):
    """WhiteNoise, async-capable: a request for anything but a static file passes straight
    through in the event loop; static files are looked up and served in a worker thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, **kwargs: Any) -> None:
        super().__init__(get_response, **kwargs)
        # Files of WHITENOISE_ROOT are served at any path; otherwise only under the prefix.
        self.served_prefix = (
            "/" if getattr(settings, "WHITENOISE_ROOT", None) else self.static_prefix
        )
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.served_prefix):
            response = await sync_to_async(self._serve_static)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def _serve_static(self, request: HttpRequest) -> HttpResponseBase | None:
        path = request.path_info
        static_file = self.find_file(path) if self.autorefresh else self.files.get(path)
        return None if static_file is None else self.serve(static_file, request)
