"""One error shape for the whole API: {"error": …, "fields": {path: [message, …]}}, with field paths as
a client writes them (items[0].quantity, shippingAddress.zipCode) and messages in words, bounded in
number and length whatever the request."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.http import JsonResponse

from ..services import shortened

MAX_FIELDS_REPORTED = 20
PRICE_FIELDS = frozenset({"unitPrice", "price", "lineTotal"})


class ApiError(Exception):
    def __init__(self, http_status: int, message: str, *, fields: dict[str, list[str]] | None = None, **extra) -> None:
        super().__init__(message)
        self.http_status, self.message, self.fields, self.extra = http_status, message, fields, extra


class BodyNotJson(ValueError):
    pass


def error_response(
    http_status: int, message: str, *, fields: dict[str, list[str]] | None = None, **extra: Any
) -> JsonResponse:
    body: dict[str, Any] = {"error": message}
    if fields:
        reported = dict(list(fields.items())[:MAX_FIELDS_REPORTED])
        body["fields"] = reported
        if len(fields) > len(reported):
            body["fieldsOmitted"] = len(fields) - len(reported)
    body.update(extra)
    return JsonResponse(body, status=http_status)


def body_too_large() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(413, f"The request body is larger than {limit} bytes, the most this API takes.")


def parse_json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyNotJson(f"Not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BodyNotJson("Not valid JSON: nested too deeply.") from exc


def field_path(location: Iterable[str | int]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{shortened(str(part))}" if path else shortened(str(part))
    return path or "body"


def _message(error: dict[str, Any]) -> str:
    kind, context = error["type"], error.get("ctx", {})
    if kind.endswith("_type") and error.get("null"):
        return "This field is required."  # null is as good as absent
    messages = {
        "missing": "This field is required.",
        "string_type": "Must be a string.",
        "string_unicode": "Must be valid Unicode text (no lone surrogates).",
        "string_too_short": "This field is required and cannot be empty.",
        "string_pattern_mismatch": "Must not contain control characters.",
        "int_type": "Must be a whole number.",
        "int_parsing": "Must be a whole number.",
        "int_from_float": "Must be a whole number.",
        "list_type": "Must be a list.",
        "model_type": "Must be an object.",
        "model_attributes_type": "Must be an object.",
        "dict_type": "Must be an object.",
        "extra_forbidden": "Unknown field: this API does not accept it.",
        "timezone_aware": "Must include a time zone, e.g. 2026-11-26T12:00:00Z.",
        "datetime_parsing": "Must be a date-time, e.g. 2026-11-26T12:00:00Z.",
        "datetime_type": "Must be a date-time, e.g. 2026-11-26T12:00:00Z.",
    }
    if kind in messages:
        return messages[kind]
    if kind == "string_too_long":
        return f"Must be at most {context['max_length']} characters."
    if kind == "too_short":
        return f"Must have at least {context['min_length']} entries."
    if kind == "too_long":
        return f"Must have at most {context['max_length']} entries."
    if kind == "greater_than_equal":
        return f"Must be at least {context['ge']}."
    if kind == "less_than_equal":
        return f"Must be at most {context['le']}."
    if kind == "literal_error":
        return f"Must be one of {context['expected']}."
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    return error["msg"]


def validation_fields(errors: list[dict[str, Any]]) -> dict[str, list[str]]:
    """pydantic's errors as the API's field errors. Locations start with where the value came from
    (body and the body's parameter name, query, header)."""
    fields: dict[str, list[str]] = {}
    for error in errors:
        location = list(error["loc"])
        where = location.pop(0) if location else "body"
        if where == "body" and location:
            location.pop(0)  # the view's parameter name, not part of the wire format
        if error["type"] == "extra_forbidden" and location and location[-1] in PRICE_FIELDS:
            path, message = field_path(location[:-1]), "Prices come from the catalogue and cannot be set."
        elif error["type"] == "extra_forbidden" and location == ["totalAmount"]:
            path, message = "totalAmount", "The total is computed from catalogue prices and cannot be set."
        elif location == ["items"] and error["type"] in ("too_short", "too_long"):
            path = "items"
            message = (
                "An order needs at least one item."
                if error["type"] == "too_short"
                else f"An order can have at most {error['ctx']['max_length']} items."
            )
        elif not location and error["type"] in ("missing", "model_attributes_type", "model_type", "dict_type"):
            path, message = "body", "Expected a JSON object."
        else:
            path, message = field_path(location), _message(error)
        fields.setdefault(path, [])
        if message not in fields[path]:
            fields[path].append(message)
    return fields
