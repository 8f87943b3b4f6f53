"""A rebuild of analytics over [start, end) keeps what events outside the window told it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from analytics import selectors
from analytics.models import OrderTimeline
from eventbus import event_types, replay
from eventbus.consuming import handle_message
from tests.events import envelope, order_placed_data

pytestmark = pytest.mark.django_db


def deliver_to(service: str, body: str) -> None:
    outcome = handle_message(service=service, body=body)
    assert outcome.acknowledged, outcome.note


def confirmed(order_id: uuid.UUID) -> dict:
    return {"orderId": str(order_id), "customerId": "c-1", "totalAmount": "3.00", "currency": "USD"}


def test_rebuilding_a_window_keeps_the_later_stages_of_orders_placed_in_it():
    order_id = uuid.uuid4()
    # Placed ten minutes before the hour, confirmed five minutes after it: an ordinary order.
    bodies = [
        envelope(event_types.ORDER_PLACED, order_placed_data(order_id, quantity=3), occurred_at="2026-11-26T08:50:00Z"),
        envelope(event_types.ORDER_CONFIRMED, confirmed(order_id), occurred_at="2026-11-26T09:05:00Z"),
    ]
    for body in bodies:
        deliver_to("audit", body)
        deliver_to("analytics", body)
    before = OrderTimeline.objects.get(order_id=order_id)
    assert before.confirmed_at is not None

    # What `replay --service analytics --rebuild --from 08:00Z --to 09:00Z` does: clear, then replay the window.
    window = replay.Window(datetime(2026, 11, 26, 8, tzinfo=UTC), datetime(2026, 11, 26, 9, tzinfo=UTC))
    replay.clear_for_rebuild(service="analytics", window=window)
    for archived in replay.envelopes(window):
        deliver_to("analytics", json.dumps({**archived, "id": str(uuid.uuid4()), "replay-name": "rebuild"}))

    after = OrderTimeline.objects.get(order_id=order_id)
    assert after.confirmed_at == before.confirmed_at, "the confirmation (after the window) was lost"
    summary = selectors.summary(window="24h", now=datetime(2026, 11, 26, 12, tzinfo=UTC))
    assert (summary.confirmed, summary.revenue) == (1, Decimal("3.00"))
