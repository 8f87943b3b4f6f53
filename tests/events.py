"""The tests' one builder of EventBridge envelopes, as SQS delivers them to a service queue."""

from __future__ import annotations

import json
import uuid
from typing import Any

from eventbus.event_types import EventType
from eventbus.models import OutboxEvent

OCCURRED_AT = "2026-11-24T10:00:00Z"
_UNSET: Any = object()


def detail(data: dict[str, Any], *, correlation_id: str | None = None, **metadata: Any) -> dict[str, Any]:
    """A `detail` block: metadata (any field overridable, e.g. eventId=...) and data."""
    return {
        "metadata": {
            "eventId": str(uuid.uuid4()),
            "schemaVersion": 1,
            "occurredAt": OCCURRED_AT,
            "correlationId": correlation_id or str(data.get("orderId") or data.get("productId") or "x"),
            "causationId": None,
            **metadata,
        },
        "data": data,
    }


def envelope(
    event_type: EventType,
    data: dict[str, Any] | None = None,
    *,
    event_id: str | uuid.UUID | None = None,
    occurred_at: str = OCCURRED_AT,
    detail_value: Any = _UNSET,
    **extra: Any,
) -> str:
    """The message body of one delivery. The envelope `id` is new each time, as on a replay; `extra`
    adds or overrides envelope fields (for example **{"replay-name": "recovery-1"})."""
    if detail_value is _UNSET:
        metadata = {"occurredAt": occurred_at}
        if event_id is not None:
            metadata["eventId"] = str(event_id)
        detail_value = detail(data or {}, **metadata)
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": event_type.detail_type,
            "source": event_type.source,
            "account": "123456789012",
            "time": occurred_at,
            "region": "us-east-1",
            "resources": [],
            "detail": detail_value,
            **extra,
        }
    )


def delivery_of(row: OutboxEvent) -> str:
    """How EventBridge delivers a published outbox row: its detail verbatim, in a fresh envelope."""
    return envelope(EventType(row.source, row.detail_type), detail_value=row.detail)


def order_placed_data(order_id: str | uuid.UUID, *, sku: str = "prod-1", quantity: int = 2) -> dict[str, Any]:
    return {
        "orderId": str(order_id),
        "customerId": "c-1",
        "items": [{"productId": sku, "name": "Thing", "unitPrice": "1.00", "quantity": quantity}],
        "totalAmount": f"{quantity:.2f}",
        "currency": "USD",
        "shippingAddress": {
            "street": "1 Main St",
            "city": "Seattle",
            "state": "WA",
            "zipCode": "98101",
            "country": "US",
        },
    }


SAMPLE_ORDER_ID = "7ec30c52-e725-4413-a165-a2926038a6e5"
# One valid `data` per detail-type, for tests that need any event of each type.
SAMPLE_DATA = {
    "Order Placed": order_placed_data(SAMPLE_ORDER_ID, quantity=1),
    "Order Confirmed": {
        "orderId": SAMPLE_ORDER_ID,
        "customerId": "c-1",
        "totalAmount": "999.99",
    },
    "Order Cancelled": {
        "orderId": SAMPLE_ORDER_ID,
        "customerId": "c-1",
        "reasonCode": "STAFF",
        "reason": "Duplicate",
        "previousStatus": "PLACED",
    },
    "Order Shipped": {
        "orderId": SAMPLE_ORDER_ID,
        "customerId": "c-1",
        "carrier": "UPS",
        "trackingNumber": "1Z",
    },
    "Inventory Reserved": {
        "orderId": SAMPLE_ORDER_ID,
        "items": [{"productId": "prod-1", "quantity": 1}],
    },
    "Reservation Failed": {
        "orderId": SAMPLE_ORDER_ID,
        "reasonCode": "INSUFFICIENT_STOCK",
        "productId": "prod-3",
        "requested": 9,
        "available": 5,
    },
    "Inventory Released": {
        "orderId": SAMPLE_ORDER_ID,
        "items": [{"productId": "prod-1", "quantity": 1}],
    },
    "Stock Updated": {
        "productId": "prod-1",
        "onHand": 5,
        "reserved": 0,
        "available": 5,
        "change": 5,
        "reasonCode": "RESTOCK",
    },
    "Low Stock Alert": {"productId": "prod-1", "productName": "Laptop", "available": 9, "threshold": 10},
    "Payment Processed": {
        "orderId": SAMPLE_ORDER_ID,
        "paymentId": "6b1f6844-b06e-4f3d-9ab7-64de9a71e25e",
        "amount": "999.99",
        "currency": "USD",
    },
    "Payment Failed": {"orderId": SAMPLE_ORDER_ID, "reasonCode": "DECLINED", "amount": "999.99"},
    "Payment Refunded": {
        "orderId": SAMPLE_ORDER_ID,
        "paymentId": "6b1f6844-b06e-4f3d-9ab7-64de9a71e25e",
        "amount": "999.99",
    },
}
