"""One worker process's handler capacity, with AWS out of the picture.

Real messages go through the real path (parse, validate, dedupe, handler, outbox) of
`eventbus.consuming`, fed from memory: the whole choreographed saga of N orders, every published event
delivered to every service that subscribes to it, wave by wave. Three runs on one database:

1. one message per transaction (`handle_message`), timed and counted per (service, detail-type):
   data statements per delivery (BEGIN, SAVEPOINT and RELEASE are counted apart) and milliseconds;
2. as a worker consuming one queue at a time receives them: batches of up to 10 per service through
   `handle_batch`, one thread;
3. as a worker consuming every queue: the same, with a thread per service queue at once.

In the same run, before the runs and again after them, it measures the bare rate of one-row
INSERT-and-COMMIT transactions from one connection, and prints the ratio of run 2's deliveries/s to
the higher of the two as `capacity ratio (<database>): X`.
Prints figures; asserts nothing.

    .venv/bin/python bench/capacity.py [--orders 300] [--show-sql]                 # SQLite
    .venv/bin/python -m tests.postgres_server -- .venv/bin/python bench/capacity.py   # PostgreSQL
    make bench-capacity                                                             # both
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopbus_site.settings")
os.environ.setdefault("DEBUG", "false")  # no query log: it is not what production runs
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("DATABASE_PREPARED_STATEMENTS", "true")  # as the workers run (README)

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

from eventbus import outbox, registry  # noqa: E402
from eventbus.consuming import handle_batch, handle_message  # noqa: E402
from eventbus.models import OutboxEvent  # noqa: E402


class BareTransactions:
    """One-row INSERT and COMMIT, one connection, as fast as it goes."""

    def __init__(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_bare (id INTEGER PRIMARY KEY, v INTEGER)")
        self.inserted = 0

    def rate(self, seconds: float) -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("INSERT INTO bench_bare (id, v) VALUES (%s, %s)", [self.inserted, done])
            self.inserted += 1
            done += 1
        return done / (time.perf_counter() - started)


COUNTED_ORDERS = 50
TRANSACTION_CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT")


class StatementCounter:
    """Counts what reaches the database, telling data statements from transaction control (on
    PostgreSQL, BEGIN and COMMIT never pass through Django's cursor; on SQLite, BEGIN does)."""

    def __init__(self) -> None:
        self.data = self.control = 0
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        # executemany runs the statement once per parameter set (psycopg pipelines them: one round trip).
        times = len(params) if many and hasattr(params, "__len__") else 1
        if sql.lstrip().upper().startswith(TRANSACTION_CONTROL):
            self.control += times
        else:
            self.data += times
        self.sql.append(sql)
        return execute(sql, params, many, context)


def database_bytes() -> int:
    """What the database holds on disk, tables and indexes, for the growth per order."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_database_size(current_database())")
            return cursor.fetchone()[0]
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
        return cursor.fetchone()[0]


def place_orders(orders: int) -> None:
    from inventory.models import StockItem
    from orders import services as order_services
    from tests.factories import OrderItemFactory, PlaceOrderRequestFactory

    for sku in ("prod-1", "prod-2"):
        item = StockItem.objects.get(product__sku=sku)
        with transaction.atomic():
            item.on_hand += orders
            item.save()
    for n in range(orders):
        order_services.place_order(
            request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id=f"prod-{1 + n % 2}")])
        )


def published_waves():
    """The outbox, wave by wave: each wave is what the last one's handlers published."""
    from tests.events import delivery_of

    while True:
        rows = list(OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).order_by("created_at"))
        if not rows:
            return
        OutboxEvent.objects.filter(pk__in=[row.pk for row in rows]).update(status=OutboxEvent.Status.PUBLISHED)
        yield [(row, delivery_of(row)) for row in rows]


def subscribers(row: OutboxEvent) -> list[str]:
    return [
        service for service in registry.services() if registry.subscription_for(service, row.source, row.detail_type)
    ]


def one_at_a_time(orders: int, *, show_sql: bool) -> dict:
    """Each delivery in a transaction of its own, timed and counted per (service, detail-type)."""
    place_orders(orders)
    per_key: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    deliveries, seconds = 0, 0.0
    for wave in published_waves():
        for row, body in wave:
            for service in subscribers(row):
                counter = StatementCounter()
                started = time.perf_counter()
                with connection.execute_wrapper(counter):
                    outcome = handle_message(service=service, body=body)
                elapsed = time.perf_counter() - started
                if not outcome.acknowledged:
                    raise SystemExit(f"{service} failed {row.detail_type}: {outcome.note}")
                figures = per_key[(service, row.detail_type)]
                if show_sql and not figures[0]:
                    print(f"--- {service} · {row.detail_type}", *(f"    {sql[:150]}" for sql in counter.sql), sep="\n")
                figures[0] += 1
                figures[1] += counter.data
                figures[2] += elapsed
                deliveries += 1
                seconds += elapsed
    return {"orders": orders, "deliveries": deliveries, "seconds": seconds, "per_key": dict(per_key)}


def as_received(orders: int, *, threads: int, count_statements: bool = False) -> dict:
    """What a worker process does: each service's deliveries in batches of up to 10 as one receive
    returns them, through handle_batch (one transaction per batch for batchable handlers, one per
    message for the others). With
    `threads` = the number of services, a thread per service queue runs at once, as EventConsumer
    does; with 1, the queues take turns. A wave's events are all delivered before the next wave, so
    every handler sees what the saga published before it. Counting statements wraps every execute,
    which costs several percent of a delivery, so the timed runs do not count."""
    place_orders(orders)
    services = registry.services()
    totals = {"data": 0, "control": 0}
    per_service: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # deliveries, data statements
    lock = threading.Lock()

    def consume(service: str, bodies: list[str]) -> None:
        counter = StatementCounter()
        with connection.execute_wrapper(counter) if count_statements else contextlib.nullcontext():
            for start in range(0, len(bodies), 10):
                outcomes = handle_batch(service=service, bodies=bodies[start : start + 10])
                failed = [outcome for outcome in outcomes if not outcome.acknowledged]
                if failed:
                    raise SystemExit(f"{service} failed {failed[0].detail_type}: {failed[0].note}")
        with lock:
            totals["data"] += counter.data
            totals["control"] += counter.control
            per_service[service][0] += len(bodies)
            per_service[service][1] += counter.data

    events = deliveries = 0
    seconds = 0.0
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="events") as pollers:
        for wave in published_waves():
            events += len(wave)
            queues: dict[str, list[str]] = {service: [] for service in services}
            for row, body in wave:
                for service in subscribers(row):
                    queues[service].append(body)
            deliveries += sum(len(bodies) for bodies in queues.values())
            started = time.perf_counter()
            for future in [pollers.submit(consume, service, bodies) for service, bodies in queues.items() if bodies]:
                future.result()
            seconds += time.perf_counter() - started
        # Each thread closes its own connection; the barrier makes every thread take one close.
        barrier = threading.Barrier(threads)

        def close_connection() -> None:
            barrier.wait()
            connections.close_all()

        for future in [pollers.submit(close_connection) for _ in range(threads)]:
            future.result()
    return {
        "orders": orders,
        "threads": threads,
        "events": events,
        "deliveries": deliveries,
        "seconds": seconds,
        "data_statements": totals["data"],
        "control_statements": totals["control"],
        "per_service": dict(per_service),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=300, help="orders for the throughput run, batched as received")
    parser.add_argument("--profile-orders", type=int, default=100, help="orders for the one-at-a-time run")
    parser.add_argument("--bare-seconds", type=float, default=3.0)
    parser.add_argument("--show-sql", action="store_true", help="print the statements of each kind's first delivery")
    args = parser.parse_args()

    from inventory.services import load_demo_catalogue
    from notifications import services as notification_services

    vendor = connection.vendor
    if vendor == "sqlite":
        # A file of its own (the connection's settings_dict is the same dict), never the tests' database.
        settings.DATABASES["default"]["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "capacity.sqlite3")
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        # Nothing leaves the process: no relay task, no email task.
        outbox.set_task_relay_waker(None)
        outbox.set_in_process_relay_waker(lambda: None)
        notification_services.set_sender(lambda notification_id: None)
        load_demo_catalogue()
        bare_transactions = BareTransactions()
        bare_before = bare_transactions.rate(args.bare_seconds)
        size_before = database_bytes()
        alone = one_at_a_time(args.profile_orders, show_sql=args.show_sql)
        batched = as_received(args.orders, threads=1)
        concurrent = as_received(args.orders, threads=len(registry.services()))
        counted = as_received(COUNTED_ORDERS, threads=1, count_statements=True)
        bytes_per_order = (database_bytes() - size_before) / (alone["orders"] + 2 * args.orders + COUNTED_ORDERS)
        bare_after = bare_transactions.rate(args.bare_seconds)
    finally:
        connection.creation.destroy_test_db(test_name, verbosity=0)

    prepared = connection.settings_dict.get("OPTIONS", {}).get("prepare_threshold") is not None
    print(f"database: {vendor}{' (prepared statements)' if prepared else ''} · ", end="")
    # A shared machine's bad moment can halve the bare rate, and a ratio over it would then double: the
    # ratio divides by the better of two measurements, before and after the runs.
    bare = max(bare_before, bare_after)
    print(f"bare one-row INSERT+COMMIT transactions/s: {bare_before:,.0f} before the runs, {bare_after:,.0f} after")
    print(f"\none message per transaction ({alone['orders']} orders), per (service, detail-type):")
    print(f"{'service':<14} {'detail-type':<20} {'deliveries':>10} {'SQL/delivery':>13} {'ms/delivery':>12}")
    for (service, detail_type), (count, statements, spent) in sorted(alone["per_key"].items()):
        print(f"{service:<14} {detail_type:<20} {count:>10} {statements / count:>13.1f} {1000 * spent / count:>12.2f}")
    alone_rate = alone["deliveries"] / alone["seconds"]
    print(f"deliveries/s: {alone_rate:,.0f}  (SQL/delivery counts data statements; BEGIN/SAVEPOINT/RELEASE are apart)")

    rate = report(batched, "one thread, the queues taking turns (as with --event-consumers <one service>)")
    print(
        f"statements per delivery, counted in a separate run of {COUNTED_ORDERS} orders: "
        f"{counted['data_statements'] / counted['deliveries']:.1f} data, "
        f"{counted['control_statements'] / counted['deliveries']:.1f} transaction control (savepoints; BEGIN on "
        "SQLite only; COMMIT never); data statements per "
        "delivery by service: "
        + ", ".join(
            f"{service} {statements / deliveries:.1f}"
            for service, (deliveries, statements) in sorted(counted["per_service"].items())
        )
    )
    report(concurrent, f"a thread per service queue, {concurrent['threads']} at once (a worker consuming every queue)")
    print(f"\ndatabase growth per order, tables and indexes: {bytes_per_order / 1024:.1f} KiB")
    print(f"\ncapacity ratio ({vendor}): {rate / bare:.2f}")


def report(figures: dict, title: str) -> float:
    seconds, deliveries = figures["seconds"], figures["deliveries"]
    rate = deliveries / seconds
    print(f"\n{title}, batches of up to 10 ({figures['orders']} orders):")
    print(f"handler time: {seconds:.2f} s for {deliveries:,} deliveries of {figures['events']:,} events")
    print(
        f"deliveries/s: {rate:,.0f} · events/s: {figures['events'] / seconds:,.0f} · "
        f"orders/s: {figures['orders'] / seconds:,.1f}"
    )
    return rate


if __name__ == "__main__":
    main()
