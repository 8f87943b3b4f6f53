"""Helpers the tests share: reading real queues, waiting on them instead of sleeping, and starting
jobs at the same instant on their own database connections."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import DataError, connection
from django.db.models import Model

from eventbus import aws, selectors, topology
from eventbus.consuming import QueuePoller

T = TypeVar("T")


def drain(queue_name: str, *, wait_seconds: int = 0) -> list[dict]:
    """Receive and delete every message on a queue; returns the parsed envelopes."""
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    envelopes = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds).get(
            "Messages", []
        )
        if not messages:
            return envelopes
        for message in messages:
            envelopes.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def queue_depth(queue_name: str) -> int:
    """Every message on the queue, visible or in flight."""
    return sum(selectors.message_counts(queue_name))


def wait_for(predicate: Callable[[], T], *, timeout: float = 30, interval: float = 0.1, what: str = "condition") -> T:
    """Poll until predicate() is truthy; the end-to-end tests wait on real queues, never on sleeps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def place_demo_order(token: str = "tok_visa", sku: str = "prod-1", quantity: int = 1):
    """Place one order of a demo product (loading the demo catalogue if it is missing)."""
    from inventory.services import load_demo_catalogue
    from orders import services
    from tests.factories import OrderItemFactory, PlaceOrderRequestFactory

    load_demo_catalogue()
    return services.place_order(
        request=PlaceOrderRequestFactory(
            items=[OrderItemFactory(product_id=sku, quantity=quantity)], payment_token=token
        )
    )


def run_together(jobs: list[Callable[[], object]]) -> list[object]:
    """Start every job at the same instant, each on its own thread and database connection; a job's
    exception is its result."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)

    def run(index: int, job: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = job()
        except Exception as exc:  # noqa: BLE001 - the caller's assertion reports it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# For behaviour that differs between the databases (NUL in text, integer and decimal ranges): the
# plain case runs in `make test`'s SQLite pass, the postgres one in its PostgreSQL pass.
# With the `database_vendor` fixture (tests/conftest.py), which skips the vendor the pass does not run.
on_both_databases = pytest.mark.parametrize(
    "database_vendor", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def poison(model: type[Model], pk: object, **columns: object) -> None:
    """Write values straight into a row, past the model's validation, as a bad migration, a manual
    fix or another program might: values the model cannot read back, or cannot work with."""
    table = connection.ops.quote_name(model._meta.db_table)
    assignments = ", ".join(f"{connection.ops.quote_name(model._meta.get_field(name).column)} = %s" for name in columns)
    pk_value = model._meta.pk.get_db_prep_value(pk, connection)
    with connection.cursor() as cursor:
        try:
            cursor.execute(
                f"UPDATE {table} SET {assignments} WHERE {connection.ops.quote_name(model._meta.pk.column)} = %s",
                [*columns.values(), pk_value],
            )
        except DataError as exc:
            if connection.vendor == "sqlite":
                raise
            pytest.skip(f"{connection.vendor} refuses the value itself, so no such row can exist there: {exc}")
        assert cursor.rowcount == 1


def single_column_indexes(model: type[Model]) -> set[str]:
    """The columns of `model`'s table that have an index of their own, unique ones included."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {facts["columns"][0] for facts in constraints.values() if facts["index"] and len(facts["columns"]) == 1}


def skipped_items(sweep: str) -> int:
    """How many items the sweep has skipped, as the SweepItemFailed metric counts them."""
    from eventbus import metrics
    from eventbus.models import MetricCount

    metrics.flush()
    return sum(
        MetricCount.objects.filter(metric=metrics.Metric.SWEEP_ITEM_FAILED, service=sweep).values_list(
            "count", flat=True
        )
    )


def send_to_queue(service: str, body: str) -> None:
    sqs = aws.client("sqs")
    sqs.send_message(
        QueueUrl=sqs.get_queue_url(QueueName=topology.SERVICE_QUEUES[service].name)["QueueUrl"], MessageBody=body
    )


def poll_queue(service: str, times: int = 1) -> None:
    """A consumer's receive on one service's queue, `times` over, in this thread."""
    poller = QueuePoller(topology.SERVICE_QUEUES[service], threading.Event())
    for _ in range(times):
        poller.poll_once()


def restock(client, *products: Model, quantity: int | str, reason: str = "delivery"):
    """The products list's Restock action, as the admin's form posts it."""
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    return client.post(
        "/admin/inventory/product/",
        {
            "action": "restock",
            ACTION_CHECKBOX_NAME: [str(product.pk) for product in products],
            "apply": "Restock",
            "quantity": quantity,
            "reason": reason,
        },
    )


def change_threshold(client, product: Model, threshold: int | str):
    """The product's change form, saved with a new low-stock threshold."""
    data = {
        "name": product.name,
        "price": "10.00",
        "active": "on",
        "stock-TOTAL_FORMS": 1,
        "stock-INITIAL_FORMS": 1,
        "stock-MIN_NUM_FORMS": 0,
        "stock-MAX_NUM_FORMS": 1,
        "stock-0-id": product.stock.pk,
        "stock-0-product": product.pk,
        "stock-0-low_stock_threshold": threshold,
    }
    return client.post(f"/admin/inventory/product/{product.pk}/change/", data)


def staff_client(
    *,
    superuser: bool = False,
    groups: tuple[str, ...] = (),
    permissions: tuple[str, ...] = (),
    name: str | None = None,
):
    """A test client signed in as a new staff member with these groups and permissions. Named `name`, or
    after its groups ("Support-user"), or "super-user" / "staff-user". A transactional test's flush
    removes the groups the data migration made: such a test gives permissions instead."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.test import Client

    name = name or "-".join(groups) or ("super" if superuser else f"staff{len(permissions) or ''}")
    user = get_user_model().objects.create_user(
        username=f"{name}-user", password="pw", is_staff=True, is_superuser=superuser
    )
    user.groups.set(Group.objects.filter(name__in=groups))
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


def dead_lettered_order(settings) -> Model:
    """An order whose Inventory Reserved ends in the orders DLQ: its row is missing until restored."""
    from eventbus.event_types import INVENTORY_RESERVED
    from orders import services as order_services
    from orders.models import Order
    from tests.events import envelope
    from tests.factories import OrderItemFactory, PlaceOrderRequestFactory

    order = order_services.place_order(request=PlaceOrderRequestFactory(items=[OrderItemFactory(product_id="prod-2")]))
    reserved = envelope(
        INVENTORY_RESERVED, {"orderId": str(order.pk), "items": [{"productId": "prod-2", "quantity": 1}]}
    )
    Order.objects.filter(pk=order.pk).delete()  # a botched restore, say
    send_to_queue("orders", reserved)
    poll_queue("orders", times=settings.SQS_MAX_RECEIVE_COUNT + 1)
    assert queue_depth(topology.SERVICE_QUEUES["orders"].dlq_name) == 1
    return order
