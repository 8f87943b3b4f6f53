"""Analytics keeps aggregates only: hourly counts per event type and one timeline row per order."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils.dateparse import parse_datetime

from eventbus import event_types
from eventbus.rows import insert_rows

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


# A delivery is two statements here: each aggregate is one INSERT … ON CONFLICT DO UPDATE, written in
# SQL because the ORM's upsert can only copy the new row's values (no `count + 1`, no COALESCE).
# The conflict clause serialises concurrent writers on the unique index, so no row lock is needed.
# Handler-path services open no savepoint (docs/architecture.md, "Savepoints").
@transaction.atomic(savepoint=False)
def count_event(*, detail_type: str, occurred_at: str, data: dict[str, Any]) -> None:
    when = parse_datetime(occurred_at)
    hour = when.replace(minute=0, second=0, microsecond=0)
    insert_rows(
        HourlyEventCount,
        [{"hour": hour, "detail_type": detail_type, "count": 1}],
        conflict=["hour", "detail_type"],
        update={"count": "{table}.{column} + 1"},
    )
    stage = _STAGES.get(detail_type)
    if stage or detail_type == event_types.PAYMENT_REFUNDED.detail_type:
        _update_timeline(UUID(data["orderId"]), stage, when, detail_type, data)


def _update_timeline(order_id: UUID, stage: str | None, when: datetime, detail_type: str, data: dict[str, Any]) -> None:
    values: dict[str, Any] = {"order_id": order_id}
    # The first occurrence of a stage wins, so a duplicate or a late replay changes nothing.
    assignments = {}
    if stage:
        values[stage] = when
        assignments[stage] = "COALESCE({table}.{column}, excluded.{column})"
    if detail_type == event_types.ORDER_PLACED.detail_type:
        values["total_amount"], values["currency"] = Decimal(data["totalAmount"]), data["currency"]
        assignments["total_amount"] = assignments["currency"] = "excluded.{column}"
    elif detail_type == event_types.ORDER_CANCELLED.detail_type:
        values["cancellation_reason_code"] = data["reasonCode"]
        assignments["cancellation_reason_code"] = "excluded.{column}"
    elif detail_type == event_types.PAYMENT_REFUNDED.detail_type:
        values["refunded_amount"] = Decimal(data["amount"])
        assignments["refunded_amount"] = "excluded.{column}"
    insert_rows(OrderTimeline, [values], conflict=["order_id"], update=assignments)


def clear_window(start: datetime, end: datetime) -> None:
    """Forget the aggregates a replay of [start, end) rebuilds: the hours of the window (whole hours:
    call with an hour-aligned window) and the timelines of orders placed in it. Aggregates only, no
    evented model, so QuerySet.delete is the right tool."""
    HourlyEventCount.objects.filter(hour__gte=start, hour__lt=end).delete()
    OrderTimeline.objects.filter(placed_at__gte=start, placed_at__lt=end).delete()
