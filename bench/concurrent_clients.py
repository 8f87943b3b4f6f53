"""Can the local stack's web server hold this many simultaneous clients without resetting one?

    make bench-clients                                  # 50 clients, 3 rounds
    .venv/bin/python bench/concurrent_clients.py --clients 50 --rounds 5 --web-port 18000 --aws-port 18566

The stack is started the way `make run` starts it (manage.py devstack), with its own SQLite database,
and stopped at the end. Each round, every client opens its connections at the same instant (a
barrier) and does GET /healthz, GET /admin/login/ and POST /api/orders. It prints what came back:
statuses, resets and other errors. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from order_flow import ROOT, Stack, free_port, stack_environment, wait_for_web

ADDRESS = {"street": "1 Bench St", "city": "Seattle", "state": "WA", "zipCode": "98101", "country": "US"}


def outcome(request: urllib.request.Request) -> str:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return str(response.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except urllib.error.URLError as error:
        return type(error.reason).__name__ if isinstance(error.reason, Exception) else str(error.reason)
    except OSError as error:  # a reset or a close while reading the response
        return type(error).__name__


def requests_of(base: str, key: str, client: int, round_: int) -> list[tuple[str, urllib.request.Request]]:
    order = {
        "customerId": f"clients-{round_}-{client}",
        "email": f"clients-{client}@example.com",
        "items": [{"productId": "prod-2", "quantity": 1}],
        "shippingAddress": ADDRESS,
    }
    return [
        ("GET /healthz", urllib.request.Request(f"{base}/healthz")),
        ("GET /admin/login/", urllib.request.Request(f"{base}/admin/login/")),
        (
            "POST /api/orders",
            urllib.request.Request(
                f"{base}/api/orders",
                method="POST",
                data=json.dumps(order).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--web-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--aws-port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()

    local = ROOT / ".local"
    local.mkdir(exist_ok=True)
    for leftover in local.glob("bench-clients.sqlite3*"):
        leftover.unlink()
    web_port, aws_port = args.web_port or free_port(), args.aws_port or free_port()
    env = stack_environment(local, "bench-clients", web_port=web_port, aws_port=aws_port)
    print(f"Starting the local stack (web :{web_port}, local AWS :{aws_port}) …", flush=True)
    stack = Stack(env, local / "bench-clients-stack.log")
    counts: dict[str, Counter[str]] = {}
    try:
        key = stack.api_key()
        base = f"http://127.0.0.1:{web_port}"
        wait_for_web(base, key)
        for round_ in range(args.rounds):
            for name, _ in requests_of(base, key, 0, round_):
                counts.setdefault(name, Counter())
            barrier = threading.Barrier(args.clients)

            def client(n: int, round_: int = round_, barrier: threading.Barrier = barrier) -> list[tuple[str, str]]:
                results = []
                for name, request in requests_of(base, key, n, round_):
                    barrier.wait(timeout=120)  # every client sends this request at the same instant
                    results.append((name, outcome(request)))
                return results

            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                for results in pool.map(client, range(args.clients)):
                    for name, result in results:
                        counts[name][result] += 1
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    finally:
        stack.stop()

    print(f"\n{args.clients} simultaneous clients, {args.rounds} rounds\n")
    print("| request | outcomes |\n| --- | --- |")
    for name, counter in counts.items():
        print(f"| {name} | {', '.join(f'{result}: {count}' for result, count in sorted(counter.items()))} |")
    outcomes = Counter()
    for counter in counts.values():
        outcomes.update(counter)
    dropped = sum(count for result, count in outcomes.items() if not result.isdigit())
    server_errors = sum(count for result, count in outcomes.items() if result.startswith("5"))
    print(f"\nconnection errors (resets, refusals, timeouts): {dropped}; HTTP 5xx: {server_errors}")
    sys.exit(1 if dropped or server_errors else 0)


if __name__ == "__main__":
    main()
