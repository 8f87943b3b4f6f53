"""The client JSON API. Plain Django views: five endpoints do not justify a framework (see README)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from eventbus.state_machine import IllegalTransition
from inventory.selectors import catalogue_entries
from observability.timelines import order_timeline

from .. import selectors, services
from ..models import Order
from .parsing import FieldErrors, parse_cancel_request, parse_place_order_request
from .serializers import catalogue_entry_json, order_json, timeline_json

View = Callable[..., JsonResponse]


def error(http_status: int, message: str, *, fields: dict[str, list[str]] | None = None, **extra: Any) -> JsonResponse:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    body.update(extra)
    return JsonResponse(body, status=http_status)


def api_endpoint(*methods: str) -> Callable[[View], View]:
    """Bearer-key authentication, method check and JSON errors for every endpoint."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> JsonResponse:
            if request.method not in methods:
                response = error(405, f"Method {request.method} is not allowed here.")
                response["Allow"] = ", ".join(methods)
                return response
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            api_key = services.authenticate_api_key(presented=presented.strip()) if scheme.lower() == "bearer" else None
            if api_key is None:
                response = error(401, "A valid API key is required: send 'Authorization: Bearer <key>'.")
                response["WWW-Authenticate"] = 'Bearer realm="shopbus"'
                return response
            request.api_key = api_key
            try:
                return view(request, *args, **kwargs)
            except FieldErrors as exc:
                return error(400, "The request is not valid.", fields=exc.errors)
            except services.OrderValidationError as exc:
                return error(400, "The order is not valid.", fields=exc.errors)

        return wrapper

    return decorate


def _json_body(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise FieldErrors({"body": [f"Not valid JSON: {exc}"]}) from exc


@api_endpoint("POST")
def order_create(request: HttpRequest) -> JsonResponse:
    place_request = parse_place_order_request(_json_body(request))
    idempotency_key = request.headers.get("Idempotency-Key", "").strip()
    if len(idempotency_key) > 255:
        raise FieldErrors({"Idempotency-Key": ["Must be at most 255 characters."]})
    if not idempotency_key:
        order, created = services.place_order(request=place_request), True
    else:
        try:
            order, created = services.place_order_idempotently(
                api_key=request.api_key, idempotency_key=idempotency_key, request=place_request
            )
        except services.IdempotencyKeyReused as exc:
            return error(422, str(exc))
    response = JsonResponse(order_json(selectors.get_order(order_id=order.id)), status=201)
    if not created:
        response["Idempotent-Replayed"] = "true"
    return response


def _find_order(order_id: str) -> Order | None:
    try:
        return selectors.get_order(order_id=uuid.UUID(order_id))
    except ValueError:
        return None


@api_endpoint("GET")
def order_detail(request: HttpRequest, order_id: str) -> JsonResponse:
    order = _find_order(order_id)
    if order is None:
        return error(404, f"No order {order_id}.")
    return JsonResponse(order_json(order))


@api_endpoint("GET")
def order_events(request: HttpRequest, order_id: str) -> JsonResponse:
    order = _find_order(order_id)
    if order is None:
        return error(404, f"No order {order_id}.")
    return JsonResponse({"orderId": str(order.id), "events": timeline_json(order_timeline(order_id=str(order.id)))})


@api_endpoint("POST")
def order_cancel(request: HttpRequest, order_id: str) -> JsonResponse:
    order = _find_order(order_id)
    if order is None:
        return error(404, f"No order {order_id}.")
    reason = parse_cancel_request(_json_body(request))
    try:
        services.cancel_order(order_id=order.id, reason_code=Order.CancellationReason.CUSTOMER_REQUEST, reason=reason)
    except IllegalTransition as exc:
        return error(409, f"The order is {exc.current} and can no longer be cancelled.", status=exc.current)
    return JsonResponse(order_json(selectors.get_order(order_id=order.id)))


@api_endpoint("GET")
def product_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"products": [catalogue_entry_json(entry) for entry in catalogue_entries().values()]})


def unknown_endpoint(request: HttpRequest, path: str = "") -> JsonResponse:
    return error(404, f"No API endpoint at {request.path}.")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: API clients get JSON, everyone else Django's page."""
    if request.path.startswith("/api/"):
        return error(500, "Internal error; it has been logged.")
    return defaults.server_error(request)
