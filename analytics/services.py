"""Analytics keeps aggregates only: hourly counts per event type and one timeline row per order."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CountedEvent:
    detail_type: str
    occurred_at: str
    data: dict[str, Any]


_STAGE_COLUMNS = frozenset(_STAGES.values())
# How a stored timeline takes a new row's values. A stage keeps its first occurrence, so a duplicate
# or a late replay changes nothing. The other columns are each set by one kind of event, and the latest
# one stands; a row that does not carry the column (NULL, or '' for text) leaves the stored value.
_TIMELINE_UPDATES = {
    **dict.fromkeys(sorted(_STAGE_COLUMNS), "COALESCE({table}.{column}, excluded.{column})"),
    "total_amount": "COALESCE(excluded.{column}, {table}.{column})",
    "currency": "COALESCE(NULLIF(excluded.{column}, ''), {table}.{column})",
    "cancellation_reason_code": "COALESCE(NULLIF(excluded.{column}, ''), {table}.{column})",
    "refunded_amount": "COALESCE(excluded.{column}, {table}.{column})",
}


# A set of events is two statements, whatever its size: each aggregate is one INSERT … ON CONFLICT DO
# UPDATE, written in SQL because the ORM's upsert can only copy the new row's values (no
# `count + n`, no COALESCE). The conflict clause serialises concurrent writers on the unique index,
# and each statement's rows are in key order, so two workers' sets lock rows in one order and never
# deadlock (eventbus/registry.py, set-based handlers).
# Handler-path services open no savepoint (docs/architecture.md, "Savepoints").
@transaction.atomic(savepoint=False)
def count_events(*, events: list[CountedEvent]) -> None:
    counts: Counter[tuple[datetime, str]] = Counter()
    timelines: dict[UUID, dict[str, Any]] = {}
    for event in events:
        when = parse_datetime(event.occurred_at)
        counts[(when.replace(minute=0, second=0, microsecond=0), event.detail_type)] += 1
        _add_to_timeline(timelines, event, when)
    insert_rows(
        HourlyEventCount,
        [{"hour": hour, "detail_type": detail_type, "count": n} for (hour, detail_type), n in sorted(counts.items())],
        conflict=["hour", "detail_type"],
        update={"count": "{table}.{column} + excluded.{column}"},
    )
    insert_rows(
        OrderTimeline,
        [timelines[order_id] for order_id in sorted(timelines)],
        conflict=["order_id"],
        update=_TIMELINE_UPDATES,
    )


def _add_to_timeline(timelines: dict[UUID, dict[str, Any]], event: CountedEvent, when: datetime) -> None:
    """Merge what `event` says of its order into the set's one row for that order, as the upsert would
    apply the events one after another (a statement may not update one row twice)."""
    values: dict[str, Any] = {}
    stage = _STAGES.get(event.detail_type)
    if stage:
        values[stage] = when
    if event.detail_type == event_types.ORDER_PLACED.detail_type:
        values["total_amount"], values["currency"] = Decimal(event.data["totalAmount"]), event.data["currency"]
    elif event.detail_type == event_types.ORDER_CANCELLED.detail_type:
        values["cancellation_reason_code"] = event.data["reasonCode"]
    elif event.detail_type == event_types.PAYMENT_REFUNDED.detail_type:
        values["refunded_amount"] = Decimal(event.data["amount"])
    if not values:
        return
    order_id = UUID(event.data["orderId"])
    row = timelines.setdefault(order_id, {"order_id": order_id})
    for column, value in values.items():
        if column in _STAGE_COLUMNS:
            row.setdefault(column, value)
        else:
            row[column] = value


def clear_window(start: datetime, end: datetime) -> None:
    """Forget the aggregates a replay of [start, end) rebuilds: the hours of the window (whole hours:
    call with an hour-aligned window) and, in each timeline, what the window's events set (a stage
    that happened in it, the placed order's amount, the cancellation's reason). What events outside
    the window set stays: the replay does not bring those events back, so deleting the timelines of
    orders placed in the window lost the stages that came after it. Aggregates only, no evented
    model, so QuerySet.update and delete are the right tools."""
    HourlyEventCount.objects.filter(hour__gte=start, hour__lt=end).delete()
    timelines = OrderTimeline.objects
    timelines.filter(placed_at__gte=start, placed_at__lt=end).update(total_amount=None, currency="")
    timelines.filter(cancelled_at__gte=start, cancelled_at__lt=end).update(cancellation_reason_code="")
    for column in sorted(_STAGE_COLUMNS):
        timelines.filter(**{f"{column}__gte": start, f"{column}__lt": end}).update(**{column: None})
    emptied = {f"{column}__isnull": True for column in (*sorted(_STAGE_COLUMNS), "total_amount", "refunded_amount")}
    timelines.filter(**emptied).delete()
