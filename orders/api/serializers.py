from __future__ import annotations

from typing import Any

from eventbus import topology
from eventbus.event_types import money
from inventory.selectors import CatalogueEntry
from observability.timelines import TimelineEntry

from ..models import Order


def order_json(order: Order) -> dict[str, Any]:
    return {
        "orderId": str(order.id),
        "customerId": order.customer_id,
        "email": order.email,
        "status": order.status,
        "items": [
            {
                "productId": line.product_id,
                "name": line.product_name,
                "unitPrice": money(line.unit_price),
                "quantity": line.quantity,
                "lineTotal": money(line.line_total),
            }
            for line in order.lines.all()
        ],
        "totalAmount": money(order.total_amount),
        "currency": order.currency,
        "shippingAddress": order.shipping_address,
        "cancellation": (
            {"reasonCode": order.cancellation_reason_code, "reason": order.cancellation_reason}
            if order.status == Order.Status.CANCELLED
            else None
        ),
        "shipment": (
            {"carrier": order.carrier, "trackingNumber": order.tracking_number} if order.tracking_number else None
        ),
        "createdAt": order.created_at.isoformat(),
        "updatedAt": order.updated_at.isoformat(),
    }


def catalogue_entry_json(entry: CatalogueEntry) -> dict[str, Any]:
    return {
        "productId": entry.product_id,
        "name": entry.name,
        "unitPrice": money(entry.unit_price),
        "available": entry.available,
    }


def failure_service(queue_name: str) -> str:
    try:
        return topology.queue_for(queue_name).service
    except LookupError:
        return ""


def _timestamp(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def timeline_json(timeline: list[TimelineEntry]) -> list[dict[str, Any]]:
    return [
        {
            "eventId": entry.event_id,
            "detailType": entry.detail_type,
            "source": entry.source,
            "occurredAt": _timestamp(entry.occurred_at),
            "causationId": entry.causation_id,
            "publishedAt": _timestamp(entry.published_at) if entry.published_at else None,
            "handledBy": [
                {
                    "service": handling.service,
                    "handledAt": _timestamp(handling.handled_at),
                    "latencyMs": round(handling.latency_ms),
                }
                for handling in entry.handled_by
            ],
            # The outcome only: the reason text is for staff (it can hold hosts and database users).
            "deliveryFailures": [
                {
                    "service": failure_service(failure.queue_name),
                    "result": failure.reason.split(":", 1)[0],
                    "receiveCount": failure.receive_count,
                    "lastFailedAt": _timestamp(failure.last_failed_at),
                }
                for failure in entry.failures
            ],
        }
        for entry in timeline
    ]
