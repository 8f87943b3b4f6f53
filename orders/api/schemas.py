"""The API's contract: request and response bodies, as published in /api/openapi.json. Field names are
the wire format's, camelCase.

Requests are strict (a quantity of "2" or true is not a number) and closed (an unknown field is an
error, so a client learns of its typo). The constraints here are the ones a client can check before
sending; the services still validate everything, since the admin places orders too."""

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from django.conf import settings
from ninja import Schema
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, ConfigDict, Field

from ..models import Order

# Control characters (C0, DEL and C1). Lone surrogates are refused by the JSON decoding itself.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"
# A free-text reason may run over several lines.
PRINTABLE_LINES = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


def Text(max_length: int, *, pattern: str = PRINTABLE, **extra) -> type[str]:
    return Annotated[str, Field(min_length=1, max_length=max_length, pattern=pattern, **extra)]


Money = Annotated[str, Field(pattern=r"^-?\d+\.\d{2}$", examples=["1059.97"])]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
OrderStatus = Literal[tuple(Order.Status.values)]


# ISO 8601's extended calendar form, as RFC 3339 writes it (a space for the T allowed, seconds
# optional): Python's fromisoformat also takes the basic form (20261126T120000Z), week dates
# (2026-W48-4) and an hour alone, which the contract's date-time does not.
EXTENDED_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")


def _iso_8601(value: object) -> datetime:
    # pydantic would also take a number as seconds since 1970; the contract says date-time.
    if not isinstance(value, str) or not EXTENDED_DATE_TIME.fullmatch(value):
        raise ValueError("Must be a date-time, e.g. 2026-11-26T12:00:00Z.")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("Must be a date-time, e.g. 2026-11-26T12:00:00Z.") from None


def _within_range(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:00:00-05:00
        raise ValueError("The date is out of range.") from exc


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_8601), AfterValidator(_within_range)]


class Request(Schema):
    model_config = ConfigDict(extra="forbid", strict=True)


class ItemIn(Request):
    productId: Text(64, examples=["prod-1"])
    quantity: Annotated[int, Field(ge=1, le=settings.ORDER_MAX_QUANTITY)]


class AddressIn(Request):
    street: Text(200, examples=["1 Main St"])
    city: Text(200, examples=["Seattle"])
    state: Text(200, examples=["WA"])
    zipCode: Text(200, examples=["98101"])
    country: Text(200, examples=["US"])


class PlaceOrderIn(Request):
    customerId: Text(200, examples=["customer-123"])
    email: Annotated[
        str,
        Field(
            min_length=3,
            max_length=254,
            pattern=PRINTABLE,
            examples=["customer@example.com"],
            json_schema_extra={"format": "email"},
        ),
    ]
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=settings.ORDER_MAX_ITEMS)]
    shippingAddress: AddressIn
    paymentToken: Text(100, examples=["tok_visa"]) = Field(
        "tok_visa", description="The payment method's token; tok_visa when left out."
    )


class CancelOrderIn(Request):
    reason: Text(500, pattern=PRINTABLE_LINES, examples=["Changed my mind"])


class OrderListQuery(Schema):
    customerId: Text(200) | None = None
    status: OrderStatus | None = None
    placedAfter: Instant | None = Field(None, description="Orders placed at or after this instant.")
    placedBefore: Instant | None = Field(None, description="Orders placed before this instant.")
    limit: Annotated[int, Field(ge=1, le=100)] = Field(20, description="Orders per page, at most 100.")
    cursor: Annotated[str, Field(max_length=200)] | None = Field(None, description="The `next` of the previous page.")


class OrderLineOut(Schema):
    productId: str
    name: str
    unitPrice: Money
    quantity: int
    lineTotal: Money


class AddressOut(Schema):
    street: str
    city: str
    state: str
    zipCode: str
    country: str


class CancellationOut(Schema):
    reasonCode: str
    reason: str


class ShipmentOut(Schema):
    carrier: str
    trackingNumber: str


class OrderOut(Schema):
    orderId: Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    customerId: str
    email: str
    status: OrderStatus
    items: list[OrderLineOut]
    totalAmount: Money
    currency: str
    shippingAddress: AddressOut
    cancellation: CancellationOut | None
    shipment: ShipmentOut | None
    createdAt: Timestamp
    updatedAt: Timestamp


class OrderListOut(Schema):
    orders: list[OrderOut]
    next: str | None = Field(description="The URL of the next page, or null on the last page.")


class ProductOut(Schema):
    productId: str
    name: str
    unitPrice: Money
    available: int


class ProductListOut(Schema):
    products: list[ProductOut]


class HandlingOut(Schema):
    service: str
    handledAt: Timestamp
    latencyMs: int


class DeliveryFailureOut(Schema):
    service: str
    result: str
    receiveCount: int
    lastFailedAt: Timestamp


class EventOut(Schema):
    eventId: str
    detailType: str
    source: str
    occurredAt: Timestamp
    causationId: str | None
    publishedAt: Timestamp | None
    handledBy: list[HandlingOut]
    deliveryFailures: list[DeliveryFailureOut]


class OrderEventsOut(Schema):
    orderId: str
    events: list[EventOut]


class ErrorOut(Schema):
    error: str
    fields: dict[str, list[str]] | None = Field(
        None, description="What is wrong with each field, by its path in the request: items[0].quantity."
    )
    fieldsOmitted: int | None = Field(None, description="How many more fields were wrong; the list above is bounded.")
    status: OrderStatus | None = Field(None, description="The order's status, when it forbids the change.")
