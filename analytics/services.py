"""Analytics keeps aggregates only: hourly counts per event type and one timeline row per order."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F
from django.utils.dateparse import parse_datetime

from eventbus import event_types

from .models import HourlyEventCount, OrderTimeline

# Which timeline column an event fills in; the first occurrence wins, so duplicates change nothing.
_STAGES = {
    event_types.ORDER_PLACED.detail_type: "placed_at",
    event_types.INVENTORY_RESERVED.detail_type: "reserved_at",
    event_types.PAYMENT_PROCESSED.detail_type: "paid_at",
    event_types.ORDER_CONFIRMED.detail_type: "confirmed_at",
    event_types.ORDER_SHIPPED.detail_type: "shipped_at",
    event_types.ORDER_CANCELLED.detail_type: "cancelled_at",
}


@transaction.atomic
def count_event(*, detail_type: str, occurred_at: str, data: dict[str, Any]) -> None:
    when = parse_datetime(occurred_at)
    hour = when.replace(minute=0, second=0, microsecond=0)
    counter, _ = HourlyEventCount.objects.get_or_create(hour=hour, detail_type=detail_type)
    HourlyEventCount.objects.filter(pk=counter.pk).update(count=F("count") + 1)
    stage = _STAGES.get(detail_type)
    if stage or detail_type == event_types.PAYMENT_REFUNDED.detail_type:
        _update_timeline(UUID(data["orderId"]), stage, when, detail_type, data)


def _update_timeline(order_id: UUID, stage: str | None, when: datetime, detail_type: str, data: dict[str, Any]) -> None:
    timeline, _ = OrderTimeline.objects.select_for_update().get_or_create(order_id=order_id)
    if stage and getattr(timeline, stage) is None:
        setattr(timeline, stage, when)
    if detail_type == event_types.ORDER_PLACED.detail_type:
        timeline.total_amount = Decimal(data["totalAmount"])
        timeline.currency = data["currency"]
    elif detail_type == event_types.ORDER_CANCELLED.detail_type:
        timeline.cancellation_reason_code = data["reasonCode"]
    elif detail_type == event_types.PAYMENT_REFUNDED.detail_type:
        timeline.refunded_amount = Decimal(data["amount"])
    timeline.save()


def clear_window(start: datetime, end: datetime) -> None:
    """Forget the aggregates a replay of [start, end) rebuilds: the hours of the window (whole hours:
    call with an hour-aligned window) and the timelines of orders placed in it. Aggregates only, no
    evented model, so QuerySet.delete is the right tool."""
    HourlyEventCount.objects.filter(hour__gte=start, hour__lt=end).delete()
    OrderTimeline.objects.filter(placed_at__gte=start, placed_at__lt=end).delete()
