"""One worker process's handler capacity, with AWS out of the picture.

Real messages go through the real path (parse, validate, dedupe, handler, outbox) of
`eventbus.consuming.handle_message`, fed from memory: the whole choreographed saga of N orders, every
published event delivered to every service that subscribes to it. In the same run, on the same
database, it measures the bare rate of one-row INSERT-and-COMMIT transactions from one connection and
prints the ratio of deliveries/s to it. Prints figures; asserts nothing.

    .venv/bin/python bench/capacity.py [--orders 300]                       # SQLite
    .venv/bin/python -m tests.postgres_server -- .venv/bin/python bench/capacity.py   # PostgreSQL
    make bench-capacity                                                     # both
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopbus_site.settings")
os.environ.setdefault("DEBUG", "false")  # no query log: it is not what production runs
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from eventbus import outbox, registry  # noqa: E402
from eventbus.consuming import handle_message  # noqa: E402
from eventbus.models import OutboxEvent  # noqa: E402


def bare_transaction_rate(seconds: float) -> float:
    """One-row INSERT and COMMIT, one connection, as fast as it goes."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_bare (id INTEGER PRIMARY KEY, v INTEGER)")
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_bare (id, v) VALUES (%s, %s)", [done, done])
        done += 1
    return done / (time.perf_counter() - started)


def run_saga(orders: int) -> dict:
    from inventory.services import load_demo_catalogue
    from notifications import services as notification_services
    from orders import services as order_services
    from tests.events import delivery_of
    from tests.factories import OrderItemFactory, PlaceOrderRequestFactory

    # Nothing leaves the process: no relay task, no email task.
    outbox.set_task_relay_waker(None)
    outbox.set_in_process_relay_waker(lambda: None)
    notification_services.set_sender(lambda notification_id: None)
    load_demo_catalogue()
    for sku in ("prod-1", "prod-2"):
        from inventory.models import StockItem

        item = StockItem.objects.get(product__sku=sku)
        with transaction.atomic():
            item.on_hand += orders
            item.save()
    for n in range(orders):
        order_services.place_order(
            request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id=f"prod-{1 + n % 2}")])
        )

    statements: dict[tuple[str, str], int] = defaultdict(int)
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    deliveries: dict[tuple[str, str], int] = defaultdict(int)
    current = {"count": 0}

    def count(execute, sql, params, many, context):
        current["count"] += 1
        return execute(sql, params, many, context)

    events = 0
    handling = 0.0
    while True:
        rows = list(OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).order_by("created_at"))
        if not rows:
            break
        OutboxEvent.objects.filter(pk__in=[row.pk for row in rows]).update(status=OutboxEvent.Status.PUBLISHED)
        events += len(rows)
        for row in rows:
            body = delivery_of(row)
            for service in registry.services():
                if not registry.subscription_for(service, row.source, row.detail_type):
                    continue
                key = (service, row.detail_type)
                current["count"] = 0
                started = time.perf_counter()
                with connection.execute_wrapper(count):
                    outcome = handle_message(service=service, body=body)
                elapsed = time.perf_counter() - started
                if not outcome.acknowledged:
                    raise SystemExit(f"{service} failed {row.detail_type}: {outcome.note}")
                handling += elapsed
                seconds[key] += elapsed
                statements[key] += current["count"]
                deliveries[key] += 1
    return {
        "orders": orders,
        "events": events,
        "deliveries": sum(deliveries.values()),
        "seconds": handling,
        "per_key": {key: (deliveries[key], statements[key], seconds[key]) for key in deliveries},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--bare-seconds", type=float, default=3.0)
    args = parser.parse_args()

    vendor = connection.vendor
    if vendor == "sqlite":
        # A file of its own (the connection's settings_dict is the same dict), never the tests' database.
        settings.DATABASES["default"]["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "capacity.sqlite3")
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        bare = bare_transaction_rate(args.bare_seconds)
        figures = run_saga(args.orders)
    finally:
        connection.creation.destroy_test_db(test_name, verbosity=0)

    seconds = figures["seconds"]
    rate = figures["deliveries"] / seconds
    print(f"database: {vendor} · orders: {figures['orders']} · handler time: {seconds:.2f} s")
    events_rate, orders_rate = figures["events"] / seconds, figures["orders"] / seconds
    print(f"deliveries/s: {rate:,.0f} · events/s: {events_rate:,.0f} · orders/s: {orders_rate:,.1f}")
    print(f"bare one-row INSERT+COMMIT transactions/s: {bare:,.0f}")
    print(f"{'service':<14} {'detail-type':<20} {'deliveries':>10} {'SQL/delivery':>13} {'ms/delivery':>12}")
    for (service, detail_type), (count, statements, spent) in sorted(figures["per_key"].items()):
        print(f"{service:<14} {detail_type:<20} {count:>10} {statements / count:>13.1f} {1000 * spent / count:>12.2f}")
    print(f"capacity ratio ({'postgresql' if vendor == 'postgresql' else vendor}): {rate / bare:.2f}")


if __name__ == "__main__":
    main()
