"""Analytics reads: the summary staff see above the order timelines (read only, from aggregates)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from eventbus import event_types

from .models import HourlyEventCount, OrderTimeline

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# Stage latencies are computed over the most recent orders in the window, at most this many.
LATENCY_SAMPLE = 5000
STAGES = (
    ("placed → reserved", "placed_at", "reserved_at"),
    ("reserved → paid", "reserved_at", "paid_at"),
    ("paid → confirmed", "paid_at", "confirmed_at"),
    ("placed → confirmed", "placed_at", "confirmed_at"),
)


@dataclass(frozen=True)
class StageLatency:
    stage: str
    orders: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Summary:
    since: datetime
    placed: int
    confirmed: int
    cancelled_by_reason: dict[str, int]
    revenue: Decimal
    refunds: Decimal
    orders_per_hour: list[tuple[datetime, int]]
    stage_latencies: list[StageLatency]

    @property
    def cancelled(self) -> int:
        return sum(self.cancelled_by_reason.values())

    def rate(self, count: int) -> float | None:
        return count / self.placed if self.placed else None

    @property
    def confirmation_rate(self) -> float | None:
        return self.rate(self.confirmed)

    @property
    def cancellation_rates(self) -> list[tuple[str, int, float | None]]:
        return [(code, count, self.rate(count)) for code, count in sorted(self.cancelled_by_reason.items())]


def _percentiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    if len(values) == 1:
        return values[0], values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[94], cuts[98]


def _money(total: Decimal | None) -> Decimal:
    # SQLite sums decimals in floating point; money is shown to the cent.
    return Decimal(total or 0).quantize(Decimal("0.01"))


def summary(*, window: str = "24h", now: datetime | None = None) -> Summary:
    now = now or timezone.now()
    since = now - WINDOWS[window]
    placed = OrderTimeline.objects.filter(placed_at__gte=since)
    totals = placed.aggregate(
        placed=Count("id"),
        confirmed=Count("id", filter=Q(confirmed_at__isnull=False)),
        revenue=Sum("total_amount", filter=Q(confirmed_at__isnull=False)),
        refunds=Sum("refunded_amount"),
    )
    cancelled = dict(
        placed.filter(cancelled_at__isnull=False)
        .values_list("cancellation_reason_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    first_hour = since.replace(minute=0, second=0, microsecond=0)
    counted = dict(
        HourlyEventCount.objects.filter(detail_type=event_types.ORDER_PLACED.detail_type, hour__gte=first_hour)
        .order_by("hour")
        .values_list("hour", "count")
    )
    # Every hour of the window, quiet ones too, so a gap shows as a gap.
    hours, hour = [], first_hour
    while hour <= now:
        hours.append((hour, counted.get(hour, 0)))
        hour += timedelta(hours=1)
    sample = list(
        placed.order_by("-placed_at").values("placed_at", "reserved_at", "paid_at", "confirmed_at")[:LATENCY_SAMPLE]
    )
    latencies = []
    for stage, start, end in STAGES:
        values = [
            (row[end] - row[start]).total_seconds() * 1000
            for row in sample
            if row[start] and row[end] and row[end] >= row[start]
        ]
        latencies.append(StageLatency(stage, len(values), *_percentiles(values)))
    return Summary(
        since=since,
        placed=totals["placed"],
        confirmed=totals["confirmed"],
        cancelled_by_reason={code or "unknown": count for code, count in cancelled.items()},
        revenue=_money(totals["revenue"]),
        refunds=_money(totals["refunds"]),
        orders_per_hour=hours,
        stage_latencies=latencies,
    )
