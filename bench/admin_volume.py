"""The admin at volume: server time and query count of the pages staff and operators open most, with
1,000 orders and then with 100,000, so a query count that grows with the data shows as a changed
number, not as a slow page later.

    .venv/bin/python -m tests.postgres_server -- .venv/bin/python bench/admin_volume.py   # PostgreSQL
    .venv/bin/python bench/admin_volume.py --orders 20000                               # SQLite
    make bench-admin

The data is loaded by this script with bulk_create, not by a migration and not through the services:
bulk_create sends no post-save signal, so no event is recorded for these synthetic rows, and their
outbox, processed and metric rows are written here as the saga would have left them. Each order has
one line, five outbox events (Order Placed, Inventory Reserved, Payment Processed, Order Confirmed,
Stock Updated), one ProcessedEvent per delivery of those events, and the last 24 hours carry a
minute-by-minute metric history. AWS is moto in process, provisioned, so the dashboard's queue
readings are real calls. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopbus_site.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from eventbus import event_types, registry  # noqa: E402
from eventbus.metrics import Metric  # noqa: E402
from eventbus.models import MetricBucket, MetricCount, OutboxEvent, ProcessedEvent  # noqa: E402
from orders.models import Order, OrderLine  # noqa: E402

SAGA = [
    event_types.ORDER_PLACED,
    event_types.INVENTORY_RESERVED,
    event_types.PAYMENT_PROCESSED,
    event_types.ORDER_CONFIRMED,
    event_types.STOCK_UPDATED,
]
BATCH = 2_000


def load_orders(start: int, stop: int, *, total: int, now) -> None:
    """Orders start..stop-1, spread over the last 30 days, newest last, with what the saga left behind."""
    span = timedelta(days=30)
    subscriptions = registry.subscriptions(active_only=True)
    handlers = {t: [s for s in subscriptions if s.event_type in (None, t)] for t in SAGA}
    for first in range(start, stop, BATCH):
        orders, lines, events, processed = [], [], [], []
        for n in range(first, min(first + BATCH, stop)):
            placed_at = now - span + span * (n / total)
            order = Order(
                customer_id=f"customer-{n % 5_000}",
                email=f"customer{n % 5_000}@example.com",
                status=Order.Status.CONFIRMED,
                total_amount=Decimal("1029.98"),
                currency="USD",
                shipping_street=f"{n} Main St",
                shipping_city="Seattle",
                shipping_state="WA",
                shipping_zip_code="98101",
                shipping_country="US",
                created_at=placed_at,
                status_changed_at=placed_at + timedelta(seconds=2),
            )
            orders.append(order)
            lines.append(
                OrderLine(
                    order=order, product_id="prod-1", product_name="Laptop", unit_price=Decimal("999.99"), quantity=1
                )
            )
            for step, event_type in enumerate(SAGA):
                event_id = uuid.uuid4()
                occurred_at = placed_at + timedelta(milliseconds=400 * step)
                events.append(
                    OutboxEvent(
                        id=event_id,
                        source=event_type.source,
                        detail_type=event_type.detail_type,
                        detail={
                            "metadata": {
                                "eventId": str(event_id),
                                "schemaVersion": 1,
                                "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
                                "correlationId": str(order.id),
                                "causationId": None,
                            },
                            "data": {"orderId": str(order.id)},
                        },
                        correlation_id=str(order.id),
                        status=OutboxEvent.Status.PUBLISHED,
                        attempts=1,
                        created_at=occurred_at,
                        next_attempt_at=occurred_at,
                        published_at=occurred_at + timedelta(milliseconds=80),
                    )
                )
                for subscription in handlers[event_type]:
                    processed.append(
                        ProcessedEvent(
                            handler=subscription.handler_id,
                            event_id=event_id,
                            detail_type=event_type.detail_type,
                            processed_at=occurred_at + timedelta(milliseconds=300),
                        )
                    )
        # Synthetic history: bulk_create on purpose (no post-save hook, so no new events recorded).
        with transaction.atomic():
            Order.objects.bulk_create(orders)
            OrderLine.objects.bulk_create(lines)
            OutboxEvent.objects.bulk_create(events)
            ProcessedEvent.objects.bulk_create(processed)


def load_metrics(*, now, hours: int = 24) -> None:
    """A minute-by-minute history of what the dashboard charts, for the last `hours`."""
    start = now.replace(second=0, microsecond=0) - timedelta(hours=hours)
    services = registry.services()
    counts, buckets = [], []
    for minute_index in range(hours * 60):
        minute = start + timedelta(minutes=minute_index)
        for event_type in SAGA:
            counts.append(
                MetricCount(
                    minute=minute,
                    metric=Metric.PUBLISH_RESULT,
                    event_type=event_type.detail_type,
                    result="published",
                    count=60,
                )
            )
            for service in services:
                counts.append(
                    MetricCount(
                        minute=minute,
                        metric=Metric.PROCESSING_RESULT,
                        service=service,
                        event_type=event_type.detail_type,
                        result="processed",
                        count=60,
                    )
                )
        for service in services:
            for metric in (Metric.PROCESSING_TIME, Metric.END_TO_END_LATENCY):
                for bucket in range(3, 9):
                    buckets.append(MetricBucket(minute=minute, metric=metric, service=service, bucket=bucket, count=10))
        for bucket in range(3, 9):
            buckets.append(MetricBucket(minute=minute, metric=Metric.PUBLISH_LAG, bucket=bucket, count=10))
    MetricCount.objects.bulk_create(counts, batch_size=BATCH)
    MetricBucket.objects.bulk_create(buckets, batch_size=BATCH)


def pages() -> dict[str, str]:
    newest = Order.objects.order_by("-created_at").values_list("pk", flat=True).first()
    return {
        "orders list": "/admin/orders/order/",
        "orders list, filtered by status": "/admin/orders/order/?status__exact=CONFIRMED",
        "orders search, by email": "/admin/orders/order/?q=customer42%40example.com",
        "orders search, by order id": f"/admin/orders/order/?q={newest}",
        "order page (with its timeline)": f"/admin/orders/order/{newest}/change/",
        "outbox list": "/admin/eventbus/outboxevent/",
        "outbox list, filtered by detail-type": "/admin/eventbus/outboxevent/?detail_type=Order+Placed",
        "outbox search, by correlation id": f"/admin/eventbus/outboxevent/?q={newest}",
        "outbox search, not an id": "/admin/eventbus/outboxevent/?q=not-an-id",
        "processed events list": "/admin/eventbus/processedevent/",
        "processed events, filtered by handler": "/admin/eventbus/processedevent/?handler=orders.payment_processed",
        # No row matches: the whole table is read unless an index leads with the handler.
        "processed events, a handler with none": "/admin/eventbus/processedevent/?handler=notifications.refund_issued",
        "event-flow dashboard (1 h)": "/admin/event-flow/?window=1h",
        "event-flow dashboard (24 h)": "/admin/event-flow/?window=24h",
    }


def measure(client: Client, url: str, repeats: int) -> tuple[float, float, int, float]:
    """Median and worst server time in ms over `repeats` requests (after one warm-up), the queries of
    one request, and the median time spent in them (the rest is Python, templates and AWS calls)."""
    response = client.get(url, secure=True)  # DEBUG is off, as in production: plain HTTP is redirected
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    timings, sql_timings, queries = [], [], 0
    for _ in range(repeats):
        spent: list[float] = []

        def timed(execute, sql, params, many, context, spent=spent):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                spent.append(time.perf_counter() - started)

        # Not CaptureQueriesContext: it forces Django's debug cursor (not what DEBUG=false runs) and
        # rounds each query's time to the millisecond.
        with connection.execute_wrapper(timed):
            started = time.perf_counter()
            client.get(url, secure=True)
            timings.append((time.perf_counter() - started) * 1000)
        queries = len(spent)
        sql_timings.append(sum(spent) * 1000)
    return statistics.median(timings), max(timings), queries, statistics.median(sql_timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000, help="the first volume measured")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from moto import mock_aws

    from eventbus.provisioning import Provisioner

    # With DEBUG off the admin's pages name their static files through collectstatic's manifest, as
    # production serves them (make run gathers them too).
    call_command("collectstatic", interactive=False, verbosity=0)
    if connection.vendor == "sqlite":
        settings.DATABASES["default"]["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "admin-volume.sqlite3")
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    results: dict[int, dict[str, tuple[float, float, int, float]]] = {}
    try:
        with mock_aws():
            Provisioner().apply()
            now = timezone.now()
            load_metrics(now=now)
            get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
            client = Client()
            client.login(username="bench", password="bench")
            loaded = 0
            for volume in (args.small, args.orders):
                started = time.perf_counter()
                load_orders(loaded, volume, total=args.orders, now=now)
                loaded = volume
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute("ANALYZE")
                print(f"loaded {volume:,} orders in {time.perf_counter() - started:.0f} s", flush=True)
                results[volume] = {name: measure(client, url, args.repeats) for name, url in pages().items()}
    finally:
        connection.creation.destroy_test_db(test_name, verbosity=0)

    small, large = args.small, args.orders
    print(f"\ndatabase: {connection.vendor} · {args.repeats} requests per page after a warm-up · server time in ms")
    print(
        f"| page | median at {small:,} | median at {large:,} | worst at {large:,} | of which SQL at {large:,} "
        f"| queries at {small:,} | queries at {large:,} |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in results[large]:
        small_median, _, small_queries, _ = results[small][name]
        median, worst, queries, sql = results[large][name]
        print(f"| {name} | {small_median:.0f} | {median:.0f} | {worst:.0f} | {sql:.0f} | {small_queries} | {queries} |")


if __name__ == "__main__":
    main()
