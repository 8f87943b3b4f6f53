"""Analytics keeps aggregates only, derived from events: hourly counts per detail-type and one stage
timeline per order. Each event is delivered through the real consumer path."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from analytics.models import HourlyEventCount, OrderTimeline
from eventbus import event_types
from eventbus.consuming import DeliveryResult, handle_message
from tests.events import SAMPLE_DATA, envelope, order_placed_data

pytestmark = pytest.mark.django_db


def deliver(event_type, data, *, at: str, event_id: uuid.UUID | None = None) -> DeliveryResult:
    outcome = handle_message(service="analytics", body=envelope(event_type, data, occurred_at=at, event_id=event_id))
    assert outcome.acknowledged, outcome.note
    return outcome.result


def counts() -> dict[tuple[str, str], int]:
    return {(f"{row.hour:%H:%M}", row.detail_type): row.count for row in HourlyEventCount.objects.all()}


def test_events_are_counted_per_hour_and_detail_type():
    for minute in ("10:05", "10:59"):
        deliver(event_types.ORDER_PLACED, order_placed_data(uuid.uuid4()), at=f"2026-11-24T{minute}:00Z")
    deliver(event_types.ORDER_PLACED, order_placed_data(uuid.uuid4()), at="2026-11-24T11:00:00Z")
    deliver(event_types.STOCK_UPDATED, SAMPLE_DATA["Stock Updated"], at="2026-11-24T10:30:00Z")

    assert counts() == {
        ("10:00", "Order Placed"): 2,
        ("11:00", "Order Placed"): 1,
        ("10:00", "Stock Updated"): 1,
    }


def test_a_duplicate_delivery_is_counted_once():
    event_id = uuid.uuid4()
    data = order_placed_data(uuid.uuid4())
    assert deliver(event_types.ORDER_PLACED, data, at="2026-11-24T10:05:00Z", event_id=event_id) == "processed"
    assert deliver(event_types.ORDER_PLACED, data, at="2026-11-24T10:05:00Z", event_id=event_id) == "duplicate"
    assert counts() == {("10:00", "Order Placed"): 1}


def test_an_order_s_stage_timeline_is_kept_from_the_producers_times():
    order_id = uuid.uuid4()
    deliver(event_types.ORDER_PLACED, order_placed_data(order_id, quantity=3), at="2026-11-24T10:00:00Z")
    deliver(event_types.INVENTORY_RESERVED, reserved(order_id), at="2026-11-24T10:00:01Z")
    deliver(event_types.PAYMENT_PROCESSED, paid(order_id), at="2026-11-24T10:00:03Z")
    deliver(event_types.ORDER_CONFIRMED, confirmed(order_id), at="2026-11-24T10:00:04Z")

    timeline = OrderTimeline.objects.get(order_id=order_id)
    assert (timeline.placed_at, timeline.reserved_at, timeline.paid_at, timeline.confirmed_at) == (
        at(10, 0, 0),
        at(10, 0, 1),
        at(10, 0, 3),
        at(10, 0, 4),
    )
    assert (timeline.total_amount, timeline.currency) == (Decimal("3.00"), "USD")
    assert timeline.cancelled_at is None


def test_the_first_occurrence_of_a_stage_wins():
    order_id = uuid.uuid4()
    deliver(event_types.INVENTORY_RESERVED, reserved(order_id), at="2026-11-24T10:00:01Z")
    # A second, distinct Inventory Reserved for the order (a producer retry) does not move the stage.
    deliver(event_types.INVENTORY_RESERVED, reserved(order_id), at="2026-11-24T10:07:00Z")
    assert OrderTimeline.objects.get(order_id=order_id).reserved_at == at(10, 0, 1)


def test_events_arriving_out_of_order_fill_the_same_timeline():
    order_id = uuid.uuid4()
    deliver(event_types.ORDER_CONFIRMED, confirmed(order_id), at="2026-11-24T10:00:04Z")
    deliver(event_types.ORDER_PLACED, order_placed_data(order_id), at="2026-11-24T10:00:00Z")
    timeline = OrderTimeline.objects.get(order_id=order_id)
    assert (timeline.placed_at, timeline.confirmed_at) == (at(10, 0, 0), at(10, 0, 4))


def test_a_cancellation_keeps_its_reason_and_a_refund_its_amount():
    order_id = uuid.uuid4()
    deliver(event_types.ORDER_PLACED, order_placed_data(order_id, quantity=2), at="2026-11-24T10:00:00Z")
    deliver(event_types.ORDER_CANCELLED, cancelled(order_id), at="2026-11-24T10:05:00Z")
    deliver(event_types.PAYMENT_REFUNDED, refunded(order_id, "2.00"), at="2026-11-24T10:05:02Z")

    timeline = OrderTimeline.objects.get(order_id=order_id)
    assert timeline.cancelled_at == at(10, 5, 0)
    assert timeline.cancellation_reason_code == "CUSTOMER_REQUEST"
    assert timeline.refunded_amount == Decimal("2.00")
    assert counts()[("10:00", "Payment Refunded")] == 1


def at(hour: int, minute: int, second: int) -> datetime:
    return datetime(2026, 11, 24, hour, minute, second, tzinfo=UTC)


def reserved(order_id: uuid.UUID) -> dict:
    return {"orderId": str(order_id), "items": [{"productId": "prod-1", "quantity": 1}]}


def paid(order_id: uuid.UUID) -> dict:
    return {"orderId": str(order_id), "paymentId": str(uuid.uuid4()), "amount": "3.00", "currency": "USD"}


def confirmed(order_id: uuid.UUID) -> dict:
    return {"orderId": str(order_id), "customerId": "c-1", "totalAmount": "3.00", "currency": "USD"}


def cancelled(order_id: uuid.UUID) -> dict:
    return {
        "orderId": str(order_id),
        "customerId": "c-1",
        "reasonCode": "CUSTOMER_REQUEST",
        "reason": "changed my mind",
        "previousStatus": "CONFIRMED",
    }


def refunded(order_id: uuid.UUID, amount: str) -> dict:
    return {"orderId": str(order_id), "paymentId": str(uuid.uuid4()), "amount": amount, "currency": "USD"}
