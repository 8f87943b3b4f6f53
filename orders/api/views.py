"""The client JSON API, on django-ninja (README, "Dependencies"): it parses and validates requests
against the schemas that /api/openapi.json publishes, so the contract and the code cannot drift."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Annotated

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from ninja import Header, NinjaAPI, Query, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError, ValidationErrorContext
from ninja.parser import Parser
from ninja.security import HttpBearer

from eventbus.state_machine import IllegalTransition
from inventory.selectors import catalogue_entries
from observability.timelines import order_timeline

from .. import selectors, services
from ..models import ApiKey, Order
from .errors import (
    ApiError,
    BodyNotJson,
    body_too_large,
    error_response,
    field_path,
    parse_json_body,
    validation_fields,
)
from .schemas import (
    CancelOrderIn,
    ErrorOut,
    OrderEventsOut,
    OrderListOut,
    OrderListQuery,
    OrderOut,
    PlaceOrderIn,
    ProductListOut,
)
from .serializers import catalogue_entry_json, order_json, timeline_json


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return services.authenticate_api_key(presented=token.strip())


class JsonBodyParser(Parser):
    def parse_body(self, request: HttpRequest):
        return parse_json_body(request.body)


class ShopbusApi(NinjaAPI):
    def validation_error_from_error_contexts(self, error_contexts: list[ValidationErrorContext]) -> ValidationError:
        # As django-ninja's own, keeping only whether a value was null (as good as absent, so "This
        # field is required."), never the value itself: errors must not echo what a client sent.
        errors = []
        for context in error_contexts:
            model = context.model
            for error in context.pydantic_validation_error.errors(include_url=False):
                error["loc"] = (model.__ninja_param_source__,) + model.__ninja_flatten_map_reverse__.get(
                    error["loc"], error["loc"]
                )
                error["null"] = error.pop("input", "") is None
                if isinstance(error.get("ctx", {}).get("error"), Exception):
                    error["ctx"]["error"] = str(error["ctx"]["error"])
                errors.append(dict(error))
        return ValidationError(errors)


api = ShopbusApi(
    title="shopbus",
    version="1",
    description=(
        "Place and track orders. Every request needs an API key: `Authorization: Bearer <key>`. "
        "A client sees and cancels only the orders it placed; a staff client sees every order. "
        'Errors are `{"error": …, "fields": {path: [message]}}`.'
    ),
    auth=ApiKeyAuth(),
    parser=JsonBodyParser(),
    urls_namespace="api",
)

CLIENT_ERRORS = {400: ErrorOut, 401: ErrorOut}
BODY_ERRORS = {413: ErrorOut, 415: ErrorOut}


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(exc.http_status, exc.message, fields=exc.fields, **exc.extra)


@api.exception_handler(ValidationError)
def _invalid_request(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return error_response(400, "The request is not valid.", fields=validation_fields(exc.errors))


@api.exception_handler(services.OrderValidationError)
def _invalid_order(request: HttpRequest, exc: services.OrderValidationError) -> HttpResponse:
    return error_response(400, "The order is not valid.", fields=exc.errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = error_response(401, "A valid API key is required: send 'Authorization: Bearer <key>'.")
    response["WWW-Authenticate"] = 'Bearer realm="shopbus"'
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, BodyNotJson):
        return error_response(400, "The request is not valid.", fields={"body": [str(exc.__cause__)]})
    if isinstance(exc.__cause__, RequestDataTooBig):
        return body_too_large()
    return error_response(exc.status_code, str(exc))


@api.exception_handler(RequestDataTooBig)
def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return body_too_large()


def _order_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, f"No order {services.shortened(raw)}.") from None


def _visible_order(request: HttpRequest, raw_order_id: str) -> Order:
    order = selectors.get_visible_order(client=request.auth.client, order_id=_order_id(raw_order_id))
    if order is None:
        # Another client's order is as absent as one that never was: its existence is not to be probed.
        raise ApiError(404, f"No order {services.shortened(raw_order_id)}.")
    return order


def _refuse_unknown_parameters(request: HttpRequest, *, known: frozenset[str] = frozenset()) -> None:
    """Requests are closed (README, "JSON API"): a misspelt filter must not silently list everything,
    and a parameter an operation does not take is refused before it changes anything."""
    unknown = sorted(set(request.GET) - known)
    if unknown:
        raise ApiError(
            400,
            "The request is not valid.",
            fields={
                (field_path([name]) if name else "(unnamed)"): ["Unknown parameter: this operation does not take it."]
                for name in unknown
            },
        )


@api.post(
    "/orders",
    response={201: OrderOut, 422: ErrorOut, **CLIENT_ERRORS, **BODY_ERRORS},
    summary="Place an order",
    description=(
        "Prices come from the catalogue. Send an `Idempotency-Key` to make retries safe: a retry with the "
        "same key and request answers the first order as it stands now (it may have moved on since), with "
        "`Idempotent-Replayed: true`, and places no other."
    ),
    operation_id="placeOrder",
    url_name="place-order",
)
def place_order(
    request: HttpRequest,
    response: HttpResponse,
    payload: PlaceOrderIn,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=255, pattern=r"^[\x20-\x7e]*$")
    ] = None,
):
    _refuse_unknown_parameters(request)
    place_request = services.PlaceOrderRequest(
        customer_id=payload.customerId,
        email=payload.email,
        items=[services.OrderItem(product_id=item.productId, quantity=item.quantity) for item in payload.items],
        shipping_address=payload.shippingAddress.model_dump(),
        payment_token=payload.paymentToken,
    )
    client = request.auth.client
    idempotency_key = (idempotency_key or "").strip()
    if not idempotency_key:
        order, created = services.place_order(request=place_request, client=client), True
    else:
        try:
            order, created = services.place_order_idempotently(
                client=client, idempotency_key=idempotency_key, request=place_request
            )
        except services.IdempotencyKeyReused as exc:
            raise ApiError(422, str(exc)) from exc
    if not created:
        response["Idempotent-Replayed"] = "true"
    return Status(201, order_json(selectors.get_order(order_id=order.id)))


def _cursor(position: selectors.OrderPosition) -> str:
    raw = f"{position.created_at.isoformat()}|{position.order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str) -> selectors.OrderPosition:
    not_ours = ApiError(400, "The request is not valid.", fields={"cursor": ["Not a cursor this API gave."]})
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, order_id = raw.split("|")
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None:
            raise not_ours
        # In UTC, as the API writes them: a hand-made 0001-01-01T00:00+05:00 has no UTC time.
        return selectors.OrderPosition(created_at=created_at.astimezone(UTC), order_id=uuid.UUID(order_id))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise not_ours from None


@api.get(
    "/orders",
    response={200: OrderListOut, **CLIENT_ERRORS},
    summary="List your orders",
    description="Newest first, a page at a time: follow `next` until it is null.",
    operation_id="listOrders",
    url_name="list-orders",
)
def list_orders(request: HttpRequest, filters: Query[OrderListQuery]):
    _refuse_unknown_parameters(request, known=frozenset(OrderListQuery.model_fields))
    page = selectors.order_page(
        client=request.auth.client,
        limit=filters.limit,
        after=_position(filters.cursor) if filters.cursor else None,
        customer_id=filters.customerId,
        status=filters.status,
        placed_after=filters.placedAfter,
        placed_before=filters.placedBefore,
    )
    next_url = None
    if page.next_position is not None:
        query = {key: value for key, value in request.GET.items() if key != "cursor"}
        query["cursor"] = _cursor(page.next_position)
        next_url = request.build_absolute_uri(f"{reverse('api:list-orders')}?{urlencode(query)}")
    return Status(200, {"orders": [order_json(order) for order in page.orders], "next": next_url})


@api.get(
    "/orders/{order_id}",
    response={200: OrderOut, 404: ErrorOut, **CLIENT_ERRORS},
    summary="Read an order",
    operation_id="getOrder",
    url_name="order",
)
def get_order(request: HttpRequest, order_id: str):
    _refuse_unknown_parameters(request)
    return Status(200, order_json(_visible_order(request, order_id)))


@api.post(
    "/orders/{order_id}/cancel",
    response={200: OrderOut, 404: ErrorOut, 409: ErrorOut, **CLIENT_ERRORS, **BODY_ERRORS},
    summary="Cancel an order",
    description="Allowed until the order ships; a 409 says the order's status when it is too late.",
    operation_id="cancelOrder",
    url_name="cancel-order",
)
def cancel_order(request: HttpRequest, order_id: str, payload: CancelOrderIn):
    _refuse_unknown_parameters(request)
    order = _visible_order(request, order_id)
    reason = payload.reason.strip()
    if not reason:
        raise ApiError(400, "The request is not valid.", fields={"reason": ["Say why the order is cancelled."]})
    try:
        services.cancel_order(order_id=order.id, reason_code=Order.CancellationReason.CUSTOMER_REQUEST, reason=reason)
    except IllegalTransition as exc:
        raise ApiError(409, f"The order is {exc.current} and can no longer be cancelled.", status=exc.current) from exc
    return Status(200, order_json(selectors.get_order(order_id=order.id)))


@api.get(
    "/orders/{order_id}/events",
    response={200: OrderEventsOut, 404: ErrorOut, **CLIENT_ERRORS},
    summary="An order's events",
    description="Every event of the order, when it was published and which services handled it.",
    operation_id="getOrderEvents",
    url_name="order-events",
)
def order_events(request: HttpRequest, order_id: str):
    _refuse_unknown_parameters(request)
    order = _visible_order(request, order_id)
    return Status(200, {"orderId": str(order.id), "events": timeline_json(order_timeline(order_id=str(order.id)))})


@api.get(
    "/products",
    response={200: ProductListOut, **CLIENT_ERRORS},
    summary="The catalogue, with the stock available now",
    operation_id="listProducts",
    url_name="products",
)
def product_list(request: HttpRequest):
    _refuse_unknown_parameters(request)
    return Status(200, {"products": [catalogue_entry_json(entry) for entry in catalogue_entries().values()]})


@require_GET
def api_index(request: HttpRequest) -> JsonResponse:
    """GET /api/: where the contract is, for a person or a client that starts at the top."""
    return JsonResponse(
        {
            "docs": request.build_absolute_uri("/api/docs"),
            "openapi": request.build_absolute_uri("/api/openapi.json"),
            "authentication": "Authorization: Bearer <key>",
        }
    )


@csrf_exempt
def unknown_endpoint(request: HttpRequest, path: str = "") -> JsonResponse:
    return error_response(404, f"No API endpoint at {services.shortened(request.path, limit=200)}.")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: API clients get JSON, everyone else Django's page."""
    if request.path.startswith("/api/"):
        return error_response(500, "Internal error; it has been logged.")
    return defaults.server_error(request)
