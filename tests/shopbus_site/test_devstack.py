"""`make run`'s supervisor, through real processes: the stack is started as `manage.py devstack` with its
own SQLite database and ports, its children are killed with SIGKILL, and what the database holds at the
end is checked. Nothing here asserts a timing; every wait is on a condition."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = {"street": "1 Main St", "city": "Seattle", "state": "WA", "zipCode": "98101", "country": "US"}


def free_ports(count: int) -> list[int]:
    """Free ports in 182xx, the range this project's local stacks use when they share a machine."""
    found = []
    for port in range(18210, 18300):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    pytest.skip("no free port in 18210-18299")


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Stack:
    """`manage.py devstack` in a subprocess, and what its output and database say."""

    def __init__(self, tmp_path: Path, *, web: bool = True, **env: str) -> None:
        self.web_port, self.aws_port = free_ports(2)
        self.database = tmp_path / "stack.sqlite3"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "DJANGO_SETTINGS_MODULE": "shopbus_site.settings",
            "DATABASE_URL": f"sqlite:///{self.database}",
            "LOCAL_DIR": str(tmp_path / "local"),
            "WEB_PORT": str(self.web_port),
            "LOCAL_AWS_PORT": str(self.aws_port),
            "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "beat-schedule"),
            "EMAIL_URL": f"filemail:///{tmp_path / 'emails'}",  # django-environ drops one slash
            **env,
        }
        self.log_path = tmp_path / "stack.log"
        self.log = self.log_path.open("w")
        command = [sys.executable, "manage.py", "devstack"] + ([] if web else ["--no-web"])
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_until_running(self) -> str:
        """The API key, once the stack says it is running."""
        match = wait_for(
            # The full announcement, not the early line that says the key before the web server answers.
            lambda: (
                self.process.poll() is None and re.search(r"shopbus is running\.[\s\S]*?key\s+(sb_\S+)", self.output())
            ),
            timeout=180,
            what=f"the stack to start (see {self.log_path})",
        )
        return match.group(1)

    def pid_of(self, name: str) -> int:
        return int(re.findall(rf"^{name} started \(pid (\d+)\)$", self.output(), re.MULTILINE)[-1])

    def kill(self, name: str) -> int:
        pid = self.pid_of(name)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_for_restart(self, name: str, old_pid: int) -> None:
        wait_for(lambda: self.pid_of(name) != old_pid, timeout=60, what=f"{name} to be started again")

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.database, timeout=30) as connection:
            return connection.execute(sql, params).fetchall()

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def start_devstack(tmp_path):
    stacks: list[Stack] = []

    def start(**options) -> Stack:
        stacks.append(Stack(tmp_path, **options))
        return stacks[-1]

    yield start
    for stack in stacks:
        stack.stop()


def place(base: str, key: str, number: int) -> str:
    items = [{"productId": "prod-2", "quantity": 1}]
    # Three orders ask for two of the five keyboards: one of them is cancelled, out of stock.
    items.append(
        {"productId": "prod-3", "quantity": 2} if number in (0, 3, 6) else {"productId": "prod-1", "quantity": 1}
    )
    request = urllib.request.Request(
        f"{base}/api/orders",
        method="POST",
        data=json.dumps(
            {"customerId": f"c-{number}", "email": "c@example.com", "items": items, "shippingAddress": ADDRESS}
        ).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["orderId"]


def test_a_killed_worker_and_then_a_killed_endpoint_lose_no_order(start_devstack):
    stack = start_devstack(PAYMENT_SIMULATED_LATENCY_MS="1000")
    key = stack.wait_until_running()
    initial = dict(
        stack.query(
            "SELECT p.sku, s.on_hand FROM inventory_stockitem s JOIN inventory_product p ON p.id = s.product_id"
        )
    )
    with ThreadPoolExecutor(max_workers=10) as pool:
        orders = list(pool.map(lambda n: place(f"http://127.0.0.1:{stack.web_port}", key, n), range(10)))

    def charged() -> int:
        return stack.query("SELECT COUNT(*) FROM payments_payment WHERE status = 'CHARGED'")[0][0]

    # Mid-flow: some orders charged, the others' events in the queues or in the worker's hands.
    wait_for(lambda: 0 < charged() < 6, timeout=120, interval=0.05, what="the first charges")
    stack.wait_for_restart("worker", stack.kill("worker"))
    charged_before = charged()
    wait_for(lambda: charged() > charged_before, timeout=120, interval=0.05, what="the new worker to charge")
    # Frozen, the worker holds the payment it is charging and whatever else it has received: with the
    # endpoint gone, those messages exist nowhere any more. The supervisor stops it with the endpoint.
    os.kill(stack.pid_of("worker"), signal.SIGSTOP)
    stack.kill("local-aws")
    wait_for(lambda: stack.output().count("Reconciled:") >= 3, timeout=120, what="the endpoint's restart")
    delivered_again = re.findall(r"^Reconciled: delivered (\d+)", stack.output(), re.MULTILINE)
    assert delivered_again and int(delivered_again[-1]) > 0

    placeholders = ",".join("?" * len(orders))
    ids = [order.replace("-", "") for order in orders]

    def statuses() -> dict[str, str]:
        return dict(stack.query(f"SELECT id, status FROM orders_order WHERE id IN ({placeholders})", *ids))

    def settled() -> bool:
        """Every order final and nothing left on any queue (visible or in flight)."""
        if len(statuses()) != 10 or not set(statuses().values()) <= {"CONFIRMED", "CANCELLED"}:
            return False
        rows = [line.split() for line in stack.manage("dlq", "list").splitlines()[1:]]
        return all(row[-3:-1] == ["0", "0"] for row in rows if row[0] != "(delivery)")

    wait_for(settled, timeout=300, interval=1, what="every order to be final and every queue empty")
    final = statuses()
    assert sorted(final.values()).count("CANCELLED") == 1, final  # a keyboard order, nothing else

    payment_by_order = dict(stack.query("SELECT order_id, status FROM payments_payment"))
    for order_id, status in final.items():
        # One Payment row per order at most (a unique column); charged exactly when confirmed.
        assert (payment_by_order.get(order_id) == "CHARGED") == (status == "CONFIRMED"), (order_id, status)
    confirmed = [order_id for order_id, status in final.items() if status == "CONFIRMED"]
    sold = dict(
        stack.query(
            "SELECT product_id, SUM(quantity) FROM orders_orderline "
            f"WHERE order_id IN ({','.join('?' * len(confirmed))}) GROUP BY product_id",
            *confirmed,
        )
    )
    stock = stack.query(
        "SELECT p.sku, s.on_hand, s.reserved FROM inventory_stockitem s JOIN inventory_product p ON p.id = s.product_id"
    )
    for sku, on_hand, reserved in stock:
        assert (on_hand, reserved) == (initial[sku] - sold.get(sku, 0), 0), sku

    depths = [line.split() for line in stack.manage("dlq", "list").splitlines()[1:]]
    assert depths and all(row[-1] == "0" for row in depths), depths
    assert stack.stop() == 0


def test_a_port_taken_by_another_endpoint_while_the_stack_runs_stops_it_untouched(start_devstack):
    from moto.server import ThreadedMotoServer

    stack = start_devstack(web=False)
    stack.wait_until_running()
    stack.kill("local-aws")
    # Another checkout's moto takes the port before the supervisor starts its own again.
    wait_for(lambda: not port_in_use(stack.aws_port), timeout=10, interval=0.01, what="the killed endpoint's port")
    foreign = ThreadedMotoServer(ip_address="127.0.0.1", port=stack.aws_port, verbose=False)
    foreign.start()
    wait_for(lambda: port_in_use(stack.aws_port), timeout=10, interval=0.01, what="the other endpoint")
    try:
        stack.process.wait(timeout=120)
        assert stack.process.returncode != 0
        assert "is answered by a server this stack did not launch" in stack.output()
        sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{stack.aws_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert sqs.list_queues().get("QueueUrls", []) == []  # nothing was provisioned on it, nor created
    finally:
        foreign.stop()
