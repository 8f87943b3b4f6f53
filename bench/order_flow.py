"""Benchmark the whole order flow on the local stack, and the raw capacity of the local bus under it.

    make bench                     # 200 orders from 8 concurrent API clients
    .venv/bin/python bench/order_flow.py --orders 500 --clients 16

The stack is started the way `make run` starts it (manage.py devstack) on free ports, with its own
SQLite database, and stopped at the end. Figures are printed as a Markdown table for
docs/performance.md. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("CONFIRMED", "CANCELLED")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def stack_environment(local: Path, name: str, *, web_port: int, aws_port: int) -> dict[str, str]:
    """A benchmark stack's environment: its own database, state, ports and beat schedule under `local`."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "DATABASE_URL": f"sqlite:///{local / f'{name}.sqlite3'}",
        "LOCAL_DIR": str(local / f"{name}-stack"),
        "WEB_PORT": str(web_port),
        "LOCAL_AWS_PORT": str(aws_port),
        "CELERY_BEAT_SCHEDULE_FILENAME": str(local / f"{name}-beat-schedule"),
        # Emails go to files, as production hands them to SMTP: the console backend would print each
        # 60-line email through the worker's log, CPU that production never spends.
        "EMAIL_URL": f"filemail:///{local / 'bench-emails'}",  # an absolute path: django-environ drops a slash
    }


class Stack:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("w")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "devstack"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def api_key(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the stack exited early; see {self.log_path}")
            # The full announcement, not the early line that says the key before the web server answers.
            match = re.search(r"shopbus is running\.[\s\S]*?key\s+(sb_\S+)", self.log_path.read_text())
            if match:
                return match.group(1)
            time.sleep(0.2)
        raise SystemExit(f"the stack did not come up in {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def http(method: str, url: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for_web(base: str, key: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http("GET", f"{base}/api/products", key)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the web server did not answer")


def measure_raw_bus(events_total: int) -> dict[str, float]:
    """Round trips on the bus alone: put_events with a batch of 10 (as the relay sends), long-poll
    receive until those 10 are in, delete_message_batch (as the consumer does), repeat. Closed loop,
    so the probe queue stays shallow: moto's receive costs grow with queue depth."""
    from eventbus import aws, topology

    events, sqs = aws.client("events"), aws.client("sqs")
    name = f"bench-probe-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = topology.bus_name()
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": [name]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "probe", "Arn": queue_arn}])
    detail = json.dumps(
        {"metadata": {"eventId": str(uuid.uuid4())}, "data": {"orderId": str(uuid.uuid4()), "padding": "x" * 400}}
    )
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(0, events_total, 10):
        sent = time.perf_counter()
        events.put_events(Entries=[{"Source": name, "DetailType": "Probe", "Detail": detail, "EventBusName": bus}] * 10)
        waiting = 10
        while waiting:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5).get(
                "Messages", []
            )
            now = time.perf_counter()
            latencies += [now - sent] * len(messages)
            waiting -= len(messages)
            if messages:
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )
    elapsed = time.perf_counter() - started
    events.remove_targets(Rule=name, EventBusName=bus, Ids=["probe"])
    events.delete_rule(Name=name, EventBusName=bus)
    sqs.delete_queue(QueueUrl=queue_url)
    return {
        "events_per_second": len(latencies) / elapsed,
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--raw-events", type=int, default=1000, help="events for the raw bus measurement")
    parser.add_argument(
        "--open-loop",
        action="store_true",
        help="fire every order at once instead of each client waiting for its last order to finish; past the "
        "local bus's capacity this measures moto's backlog, whose receive cost grows with queue depth",
    )
    args = parser.parse_args()

    local = ROOT / ".local"
    local.mkdir(exist_ok=True)
    for leftover in local.glob("bench.sqlite3*"):
        leftover.unlink()
    web_port, aws_port = free_port(), free_port()
    env = stack_environment(local, "bench", web_port=web_port, aws_port=aws_port)
    os.environ.update({k: v for k, v in env.items() if k in ("DATABASE_URL", "WEB_PORT", "LOCAL_AWS_PORT")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopbus_site.settings")
    sys.path.insert(0, str(ROOT))

    print(f"Starting the local stack (web :{web_port}, local AWS :{aws_port}) …", flush=True)
    stack = Stack(env, local / "bench-stack.log")
    try:
        key = stack.api_key()
        base = f"http://127.0.0.1:{web_port}"
        wait_for_web(base, key)

        import django

        django.setup()
        from eventbus.models import OutboxEvent, ProcessedEvent
        from inventory import services as inventory_services
        from inventory.models import Product
        from orders.models import Order

        # The bus's raw capacity first, on the same moto server with the stack up but idle.
        print(f"Measuring the raw local bus with {args.raw_events} events …", flush=True)
        raw = measure_raw_bus(args.raw_events)
        inventory_services.restock(
            product_ids=list(Product.objects.values_list("pk", flat=True)), quantity=args.orders * 10
        )
        # Let the restock events drain before the clock starts (deliveries inside the window are counted
        # as the orders'): nothing left to publish, and no delivery for two seconds, longer than the
        # window in which analytics and audit let events gather (EVENT_BATCHING_WINDOW_MS).
        deadline = time.monotonic() + 60
        counts: list[int] = []
        while time.monotonic() < deadline:
            counts = [*counts[-2:], ProcessedEvent.objects.count()]
            quiet = len(counts) == 3 and len(set(counts)) == 1
            if quiet and not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists():
                break
            time.sleep(1)
        skus = list(Product.objects.values_list("sku", flat=True))
        address = {"street": "1 Bench St", "city": "Seattle", "state": "WA", "zipCode": "98101", "country": "US"}

        def place(n: int) -> str:
            body = {
                "customerId": f"bench-{n}",
                "email": f"bench-{n}@example.com",
                "items": [{"productId": random.choice(skus), "quantity": 1}],
                "shippingAddress": address,
            }
            order_id = http("POST", f"{base}/api/orders", key, body)["orderId"]
            while not args.open_loop and http("GET", f"{base}/api/orders/{order_id}", key)["status"] not in FINAL:
                # A client that waits for its order, as a checkout page does. Latencies are read from the
                # database, so the interval paces the loop without rounding them; a tighter one would
                # put the harness's own HTTP load on the cores it measures.
                time.sleep(0.2)
            return order_id

        mode = "open loop" if args.open_loop else "closed loop"
        print(f"Placing {args.orders} orders from {args.clients} concurrent clients ({mode}) …", flush=True)
        wall_start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            order_ids = list(pool.map(place, range(args.orders)))
        placing_seconds = time.perf_counter() - wall_start
        deadline = time.monotonic() + 600
        while Order.objects.filter(pk__in=order_ids, status__in=FINAL).count() < len(order_ids):
            if time.monotonic() > deadline:
                raise SystemExit("orders did not all reach a final state within 10 minutes")
            time.sleep(0.25)
        time.sleep(3)  # let analytics, audit and notifications finish the last events

        orders = list(Order.objects.filter(pk__in=order_ids))
        first_placed = min(o.created_at for o in orders)
        last_final = max(o.status_changed_at for o in orders)
        window = (last_final - first_placed).total_seconds()
        confirmed = [
            (o.status_changed_at - o.created_at).total_seconds() * 1000 for o in orders if o.status == "CONFIRMED"
        ]
        # The clients' first orders go into a cold stack together; p99 of 200 is the 3rd slowest.
        warm = sorted(orders, key=lambda o: o.created_at)[args.clients :]
        confirmed_warm = [
            (o.status_changed_at - o.created_at).total_seconds() * 1000 for o in warm if o.status == "CONFIRMED"
        ]
        published = OutboxEvent.objects.filter(published_at__gte=first_placed, published_at__lte=last_final).count()
        delivered = ProcessedEvent.objects.filter(processed_at__gte=first_placed, processed_at__lte=last_final).count()
        all_delivered = ProcessedEvent.objects.filter(processed_at__gte=first_placed).count()
        delivery_rate = delivered / window
    finally:
        stack.stop()

    ratio = delivery_rate / raw["events_per_second"]
    confirmed_count = sum(o.status == "CONFIRMED" for o in orders)
    p50, p95, p99 = (percentile(confirmed, q) for q in (0.5, 0.95, 0.99))
    w50, w95, w99 = (percentile(confirmed_warm, q) for q in (0.5, 0.95, 0.99))
    raw_figures = (
        f"{raw['events_per_second']:.1f} events/s, median {raw['median_ms']:.0f} ms, p99 {raw['p99_ms']:.0f} ms"
    )
    print(
        f"""
| figure | value |
| --- | --- |
| orders placed / clients / load | {args.orders} / {args.clients} / {mode} |
| client throughput (placed, and final if closed loop) | {args.orders / placing_seconds:.1f} orders/s |
| orders reaching a final state | {len(orders) / window:.1f} orders/s ({confirmed_count} confirmed) |
| placement → CONFIRMED p50 / p95 / p99 | {p50:.0f} / {p95:.0f} / {p99:.0f} ms |
| the same without the clients' first {args.clients} orders | {w50:.0f} / {w95:.0f} / {w99:.0f} ms |
| events published | {published / window:.1f} events/s ({published} in {window:.1f} s) |
| queue deliveries handled | {delivery_rate:.1f} deliveries/s ({delivered} in the window, {all_delivered} in all) |
| raw bus: put_events (batches of 10) → receive + delete_message_batch | {raw_figures} |
| **ratio of shopbus deliveries to raw bus deliveries** | **{ratio:.2f}** |

Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores.
"""
    )


if __name__ == "__main__":
    main()
