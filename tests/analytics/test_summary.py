from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from analytics import selectors
from analytics.models import HourlyEventCount, OrderTimeline

pytestmark = pytest.mark.django_db


def timeline(*, placed_ago_minutes: int, stages_ms: tuple[int, int, int] | None, cancelled: str = "", **fields):
    placed = timezone.now() - timedelta(minutes=placed_ago_minutes)
    values = {"placed_at": placed, "total_amount": Decimal("10.00"), "currency": "USD", **fields}
    if stages_ms:
        reserved = placed + timedelta(milliseconds=stages_ms[0])
        paid = reserved + timedelta(milliseconds=stages_ms[1])
        values.update(reserved_at=reserved, paid_at=paid, confirmed_at=paid + timedelta(milliseconds=stages_ms[2]))
    if cancelled:
        values.update(cancelled_at=placed + timedelta(seconds=1), cancellation_reason_code=cancelled)
    return OrderTimeline.objects.create(order_id=uuid.uuid4(), **values)


def test_the_summary_reports_rates_money_and_stage_latencies():
    for n in range(6):
        timeline(placed_ago_minutes=10 + n, stages_ms=(100, 200 + n * 100, 50))
    timeline(placed_ago_minutes=5, stages_ms=None, cancelled="OUT_OF_STOCK")
    timeline(placed_ago_minutes=5, stages_ms=None, cancelled="PAYMENT_FAILED")
    timeline(
        placed_ago_minutes=5, stages_ms=(100, 200, 50), cancelled="CUSTOMER_REQUEST", refunded_amount=Decimal("10.00")
    )
    timeline(placed_ago_minutes=60 * 30, stages_ms=(1, 1, 1))  # outside the 24 hours
    HourlyEventCount.objects.create(
        hour=timezone.now().replace(minute=0, second=0, microsecond=0), detail_type="Order Placed", count=9
    )

    summary = selectors.summary(window="24h")

    assert (summary.placed, summary.confirmed, summary.cancelled) == (9, 7, 3)
    assert summary.cancelled_by_reason == {"OUT_OF_STOCK": 1, "PAYMENT_FAILED": 1, "CUSTOMER_REQUEST": 1}
    assert summary.confirmation_rate == pytest.approx(7 / 9)
    assert (summary.revenue, summary.refunds) == (Decimal("70.00"), Decimal("10.00"))
    assert [count for _, count in summary.orders_per_hour if count] == [9]
    stages = {stage.stage: stage for stage in summary.stage_latencies}
    assert stages["placed → reserved"].p50_ms == pytest.approx(100)
    assert stages["reserved → paid"].orders == 7
    assert 200 <= stages["reserved → paid"].p50_ms <= 700
    assert stages["reserved → paid"].p99_ms == pytest.approx(700, rel=0.05)
    assert stages["placed → confirmed"].p50_ms == pytest.approx(150 + 200 + 200, rel=0.5)


def test_staff_read_the_summary_in_the_admin_and_cannot_change_it(client):
    timeline(placed_ago_minutes=5, stages_ms=(100, 200, 50))
    client.force_login(get_user_model().objects.create_superuser("analyst", "a@example.com", "pw"))
    page = client.get("/admin/analytics/ordertimeline/?window=7d")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Orders placed per hour" in text and "paid → confirmed" in text and "Revenue (confirmed orders)" in text
    assert client.get("/admin/analytics/ordertimeline/add/").status_code == 403
    assert client.get("/admin/analytics/hourlyeventcount/").status_code == 200
    index = client.get("/admin/").content.decode()
    assert "/admin/event-flow/" in index and "/admin/analytics/ordertimeline/" in index


def test_quiet_hours_show_as_zero_and_the_window_s_first_hour_counts():
    now = timezone.now()
    for hours_ago, count in ((23, 5), (1, 7)):
        hour = (now - timedelta(hours=hours_ago)).replace(minute=0, second=0, microsecond=0)
        HourlyEventCount.objects.create(hour=hour, detail_type="Order Placed", count=count)
    hours = selectors.summary(window="24h", now=now).orders_per_hour
    assert len(hours) in (24, 25)
    assert sum(count for _, count in hours) == 12
    assert [count for _, count in hours].count(0) == len(hours) - 2
