"""The event types shopbus publishes: every (source, detail-type), and the codes their data carries.

This is the contract between services (docs/architecture.md, "Event types"). Each detail-type has a
JSON Schema under `schemas/`; the reason-code enums below are the values those schemas admit, so a
service that reacts to a code spells it from here rather than typing the string again.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

SOURCE_PREFIX = "ecommerce."


class EventType(NamedTuple):
    source: str
    detail_type: str

    @property
    def schema_name(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.detail_type.lower()).strip("-")

    def __str__(self) -> str:
        return f"{self.source}/{self.detail_type}"


ORDERS = "ecommerce.orders"
INVENTORY = "ecommerce.inventory"
PAYMENTS = "ecommerce.payments"

ORDER_PLACED = EventType(ORDERS, "Order Placed")
ORDER_CONFIRMED = EventType(ORDERS, "Order Confirmed")
ORDER_CANCELLED = EventType(ORDERS, "Order Cancelled")
ORDER_SHIPPED = EventType(ORDERS, "Order Shipped")

INVENTORY_RESERVED = EventType(INVENTORY, "Inventory Reserved")
RESERVATION_FAILED = EventType(INVENTORY, "Reservation Failed")
INVENTORY_RELEASED = EventType(INVENTORY, "Inventory Released")
STOCK_UPDATED = EventType(INVENTORY, "Stock Updated")
LOW_STOCK_ALERT = EventType(INVENTORY, "Low Stock Alert")

PAYMENT_PROCESSED = EventType(PAYMENTS, "Payment Processed")
PAYMENT_FAILED = EventType(PAYMENTS, "Payment Failed")
PAYMENT_REFUNDED = EventType(PAYMENTS, "Payment Refunded")

# Commands of the orchestrated saga (ORDER_SAGA=stepfunctions). The state machine puts them on the bus
# with a task token; the service that owns the step answers after its transaction commits. Their
# source is outside ecommerce.*, so the catch-all subscribers (analytics, audit) and the archive see
# only domain events, the same under either coordinator.
SAGA = "shopbus.saga"
RESERVE_STOCK = EventType(SAGA, "Reserve Stock")
CHARGE_PAYMENT = EventType(SAGA, "Charge Payment")
CONFIRM_ORDER = EventType(SAGA, "Confirm Order")
RELEASE_STOCK = EventType(SAGA, "Release Stock")
REFUND_PAYMENT = EventType(SAGA, "Refund Payment")
CANCEL_ORDER = EventType(SAGA, "Cancel Order")

ALL_EVENT_TYPES: tuple[EventType, ...] = (
    ORDER_PLACED,
    ORDER_CONFIRMED,
    ORDER_CANCELLED,
    ORDER_SHIPPED,
    INVENTORY_RESERVED,
    RESERVATION_FAILED,
    INVENTORY_RELEASED,
    STOCK_UPDATED,
    LOW_STOCK_ALERT,
    PAYMENT_PROCESSED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
)

SAGA_COMMANDS: tuple[EventType, ...] = (
    RESERVE_STOCK,
    CHARGE_PAYMENT,
    CONFIRM_ORDER,
    RELEASE_STOCK,
    REFUND_PAYMENT,
    CANCEL_ORDER,
)

_BY_KEY = {(t.source, t.detail_type): t for t in (*ALL_EVENT_TYPES, *SAGA_COMMANDS)}


class CancellationReason(StrEnum):
    """`reasonCode` of Order Cancelled."""

    CUSTOMER_REQUEST = "CUSTOMER_REQUEST"
    STAFF = "STAFF"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    TIMEOUT = "TIMEOUT"


class ReservationFailure(StrEnum):
    """`reasonCode` of Reservation Failed."""

    PRODUCT_NOT_FOUND = "PRODUCT_NOT_FOUND"
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"


class PaymentFailure(StrEnum):
    """`reasonCode` of Payment Failed."""

    DECLINED = "DECLINED"
    INVALID_TOKEN = "INVALID_TOKEN"
    # The gateway kept failing (timeouts, 5xx) for PAYMENT_MAX_GATEWAY_ATTEMPTS attempts.
    GATEWAY_ERROR = "GATEWAY_ERROR"


class StockChange(StrEnum):
    """`reasonCode` of Stock Updated."""

    RESTOCK = "RESTOCK"
    SALE = "SALE"
    RETURN = "RETURN"
    ADJUSTMENT = "ADJUSTMENT"


def money(amount: Decimal) -> str:
    """Money travels as a decimal string with two places ("1059.97"), never as a float."""
    return f"{amount:.2f}"


def lookup(source: str, detail_type: str) -> EventType | None:
    return _BY_KEY.get((source, detail_type))
