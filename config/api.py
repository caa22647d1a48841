"""Project-wide API plumbing: strict JSON in, clear 4xx/503 JSON out (never a 500), paging."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.core.validators import RegexValidator
from django.db import DataError
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from config.errors import DomainError, text_problem
from config.middleware import DATA_ERROR_MESSAGE, RETRY_AFTER_SECONDS, is_outage

# Deeper than any body the API accepts (an entity's attributes are the deepest, at 2), far
# below the depth at which the parser would exhaust Python's stack.
MAX_JSON_DEPTH = 32


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check(value: Any) -> None:
    """Walk the parsed body (iteratively): bounded depth, and only storable text."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ParseError(f"The JSON body is nested too deeply (limit {MAX_JSON_DEPTH}).")
            if isinstance(item, dict):
                for key in item:
                    if problem := text_problem(key):
                        raise ParseError(f"A JSON key has {problem}.")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str) and (problem := text_problem(item)):
            raise ParseError(f"A JSON value has {problem}.")


class StrictJSONParser(JSONParser):
    """JSON only, strictly: no NaN, bounded nesting, no NUL or lone surrogates in strings.

    The body size is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE (Django raises RequestDataTooBig,
    answered 413 by the exception handler below).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            text = stream.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError("The JSON body is not valid UTF-8.") from exc
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except RecursionError as exc:
            raise ParseError(
                f"The JSON body is nested too deeply (limit {MAX_JSON_DEPTH})."
            ) from exc
        except ValueError as exc:
            raise ParseError(f"The JSON body is not valid: {exc}") from exc
        _check(data)
        return data


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # A missing object is always the caller's id that is not theirs (or gone).
    if isinstance(exc, ObjectDoesNotExist):
        return Response({"detail": "Not found."}, status=404)
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message}, status=exc.status)
    if isinstance(exc, DataError):
        return Response({"detail": DATA_ERROR_MESSAGE}, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": PayloadTooLarge.default_detail}, status=413)
    if is_outage(exc):
        return Response(
            {"detail": "Mnemo is busy or restarting. Please retry in a few seconds."},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES (this module) on import.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if isinstance(exc, ValidationError) and response is not None:
        # One shape for every error: a `detail` to show, and the fields' own messages.
        response.data = {"detail": _first_message(response.data), "errors": response.data}
    return response


def _first_message(errors: Any) -> str:
    while isinstance(errors, dict | list) and errors:
        errors = next(iter(errors.values())) if isinstance(errors, dict) else errors[0]
    return str(errors) if errors else "The request is not valid."


class Pagination(LimitOffsetPagination):
    """`?limit=&offset=` on every list; the page size is bounded so no list is unbounded.

    A limit or offset that is not a whole number in range is a 400, not silently ignored.
    """

    default_limit = 50
    max_limit = 200

    def _number(self, request: Any, name: str, minimum: int, maximum: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not raw.isdigit() or not minimum <= int(raw) <= maximum:
            raise ValidationError({name: [f"Give a whole number from {minimum} to {maximum}."]})
        return int(raw)

    def get_limit(self, request: Any) -> int:
        limit = self._number(request, self.limit_query_param, 1, self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Any) -> int:
        return self._number(request, self.offset_query_param, 0, 10**9) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0, "maximum": 10**9},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


def paginated(request: Any, items: Any, serializer: type[serializers.BaseSerializer]) -> Response:
    """One page of `items` (a queryset or a list) as `{count, next, previous, results}`."""
    pagination = Pagination()
    page: Any = pagination.paginate_queryset(items, request)
    return pagination.get_paginated_response(serializer(page, many=True).data)


# `errors` cannot be a declared field (Serializer.errors), hence an inline serializer.
ErrorOutput = inline_serializer(
    "Error",
    {
        "detail": serializers.CharField(help_text="What went wrong, to show as is."),
        "errors": serializers.JSONField(
            required=False, help_text="For invalid input: each field's messages, by field name."
        ),
    },
)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error responses of an operation: each is `{"detail": "..."}`."""
    described = {
        400: "Invalid input (the message says what)",
        401: "Not signed in: no session or token",
        403: "Not allowed",
        404: "Not found (or not yours)",
        409: "Conflicts with the current state (the message says what)",
        413: "Too large",
        415: "Only application/json bodies",
        429: "Too many requests",
        503: "A backing service is restarting; retry after `Retry-After` seconds",
    }
    return {code: OpenApiResponse(ErrorOutput, description=described[code]) for code in codes}


class StrictBooleanField(serializers.BooleanField):
    """JSON `true` or `false` only: `0`, `1` and `"yes"` are 400s, as the schema says."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class TextField(serializers.CharField):
    """A string and only a string: `{"content": 0}` is a 400, not the text "0".

    Not blank by default, and at least one non-space character, which the schema says too
    (minLength 1, pattern `\\S`), so what the schema allows the API accepts.
    """

    def __init__(self, *, empty_message: str = "This field may not be blank.", **kwargs: Any):
        # Lengths count what was sent, as the schema's maxLength does (services tidy spaces).
        kwargs.setdefault("trim_whitespace", False)
        if not kwargs.get("allow_blank"):
            kwargs.setdefault("min_length", 1)
            kwargs.setdefault("validators", [RegexValidator(r"\S", empty_message)])
            kwargs.setdefault("error_messages", {"blank": empty_message})
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))
