"""handle_batch: which receives share a transaction, and that a failure in one never costs another."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from analytics.models import HourlyEventCount, OrderTimeline
from audit.models import AuditEvent
from eventbus import events, outbox, registry
from eventbus.consuming import DeliveryResult, handle_batch, handle_message
from eventbus.event_types import (
    INVENTORY_RESERVED,
    ORDER_CANCELLED,
    ORDER_CONFIRMED,
    ORDER_PLACED,
    ORDER_SHIPPED,
    PAYMENT_PROCESSED,
)
from eventbus.models import OutboxEvent, ProcessedEvent
from inventory.models import Reservation, StockItem
from notifications import services as notification_services
from notifications.models import Notification
from orders import services as order_services
from orders.models import Order
from payments.models import Payment
from tests.events import SAMPLE_DATA, envelope, order_placed_data
from tests.factories import PlaceOrderRequestFactory
from tests.helpers import run_together

pytestmark = pytest.mark.django_db(transaction=True)


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def begins(queries) -> int:
    return sum(query["sql"].startswith("BEGIN") for query in queries)


def race_in_opposite_orders(*, service: str, bodies: list[str]) -> list[list]:
    """Two workers handle the same receive at once, one in reverse order; each must acknowledge every
    message. Returns both workers' outcomes."""
    results = run_together(
        [
            lambda: handle_batch(service=service, bodies=bodies),
            lambda: handle_batch(service=service, bodies=bodies[::-1]),
        ]
    )
    for outcomes in results:
        assert not isinstance(outcomes, Exception), outcomes
        assert all(outcome.acknowledged for outcome in outcomes), [outcome.note for outcome in outcomes]
    return results


def placed_events(count: int) -> list[str]:
    return [envelope(ORDER_PLACED, order_placed_data(uuid.uuid4())) for _ in range(count)]


def confirmed_events(count: int) -> list[str]:
    data = SAMPLE_DATA["Order Confirmed"]
    return [
        envelope(ORDER_CONFIRMED, {**data, "orderId": str(uuid.uuid4()), "email": "ada@example.com"})
        for _ in range(count)
    ]


@pytest.fixture
def audit_handler(monkeypatch):
    """Replace audit's handler for one test, keeping its id and its batchable declaration."""

    def replace(handler):
        real = registry.subscription_for("audit", ORDER_PLACED.source, ORDER_PLACED.detail_type)
        monkeypatch.setitem(registry._every_event, "audit", dataclasses.replace(real, handler=handler))
        return real.handler

    return replace


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's BEGIN does not pass through Django's cursor")
def test_a_batchable_service_commits_a_receive_in_one_transaction(db, monkeypatch):
    sent = []  # the emails' own transactions are the send task's, after the commit
    monkeypatch.setattr(notification_services, "_send_later", sent.append)
    with CaptureQueriesContext(connection) as queries:
        outcomes = handle_batch(service="notifications", bodies=confirmed_events(3))

    assert [outcome.result for outcome in outcomes] == [DeliveryResult.PROCESSED] * 3
    assert Notification.objects.count() == len(sent) == 3
    assert begins(queries) == 1
    assert not [query["sql"] for query in queries if query["sql"].startswith("SAVEPOINT")]


@pytest.mark.parametrize("service", ["audit", "analytics"])
def test_a_set_based_service_writes_a_receive_with_a_statement_per_table(db, service):
    with CaptureQueriesContext(connection) as queries:
        outcomes = handle_batch(service=service, bodies=placed_events(10))

    assert [outcome.result for outcome in outcomes] == [DeliveryResult.PROCESSED] * 10
    assert ProcessedEvent.objects.count() == 10
    data_statements = [query["sql"] for query in queries if not query["sql"].startswith(TRANSACTION_CONTROL)]
    # The dedupe, then audit's envelopes, or analytics' hourly counts and its order timelines.
    assert len(data_statements) == {"audit": 2, "analytics": 3}[service], data_statements


def test_a_set_based_service_answers_a_set_as_it_would_each_message(db):
    orders = [uuid.uuid4() for _ in range(3)]
    bodies = [envelope(ORDER_PLACED, order_placed_data(order_id)) for order_id in orders]
    bodies += [
        envelope(INVENTORY_RESERVED, {"orderId": str(order_id), "items": [{"productId": "prod-1", "quantity": 1}]})
        for order_id in orders
    ]
    bodies.insert(2, bodies[0])  # a redelivery within the same receive
    bodies.append(envelope(INVENTORY_RESERVED, json.loads(bodies[-1])["detail"]["data"]))  # a producer's retry

    def aggregates():
        counts = sorted(HourlyEventCount.objects.values_list("hour", "detail_type", "count"))
        timelines = sorted(
            OrderTimeline.objects.values_list("order_id", "placed_at", "reserved_at", "total_amount", "currency")
        )
        return counts, timelines

    one_by_one = [handle_message(service="analytics", body=body).result for body in bodies]
    expected = aggregates()
    HourlyEventCount.objects.all().delete()
    OrderTimeline.objects.all().delete()
    ProcessedEvent.objects.all().delete()

    as_a_set = [outcome.result for outcome in handle_batch(service="analytics", bodies=bodies)]

    assert as_a_set == one_by_one
    assert one_by_one.count(DeliveryResult.DUPLICATE) == 1
    assert aggregates() == expected


def locks(queries) -> tuple[int, int]:
    """How many times the reservations, and the stock rows, were read for update."""
    return (
        sum(query["sql"].startswith('SELECT "inventory_reservation"') for query in queries),
        sum(query["sql"].startswith('SELECT "inventory_stockitem"') for query in queries),
    )


def stock_of(*skus: str) -> list[tuple[int, int]]:
    return [tuple(StockItem.objects.filter(product__sku=sku).values_list("on_hand", "reserved").get()) for sku in skus]


def placed_for(orders: list[uuid.UUID], skus: list[str]) -> list[str]:
    return [
        envelope(ORDER_PLACED, order_placed_data(order_id, sku=sku, quantity=2))
        for order_id, sku in zip(orders, skus, strict=True)
    ]


def decided(orders: list[uuid.UUID], detail_type: str) -> list[str]:
    data = SAMPLE_DATA[detail_type]
    return [
        envelope(
            ORDER_CONFIRMED if detail_type == "Order Confirmed" else ORDER_CANCELLED, {**data, "orderId": str(order_id)}
        )
        for order_id in orders
    ]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's BEGIN does not pass through Django's cursor")
def test_inventory_commits_a_receive_in_one_transaction_locking_its_stock_once(catalogue, monkeypatch):
    # Its orders share stock rows, so the receive locks its reservations and then all its stock rows
    # first, each in one query; each reservation, commit and release then works on those rows.
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)  # the relay's own transactions are not counted
    orders = sorted((uuid.uuid4() for _ in range(4)), key=str)  # the order a receive handles them in

    with CaptureQueriesContext(connection) as queries:
        placed = handle_batch(service="inventory", bodies=placed_for(orders, ["prod-1", "prod-2", "prod-1", "prod-2"]))

    assert [outcome.note for outcome in placed] == [Reservation.Status.RESERVED] * 4
    assert (begins(queries), locks(queries)) == (1, (1, 1))
    assert stock_of("prod-1", "prod-2") == [(50, 4), (100, 4)]

    bodies = decided(orders[:3], "Order Confirmed") + decided(orders[3:], "Order Cancelled")
    with CaptureQueriesContext(connection) as queries:
        decided_outcomes = handle_batch(service="inventory", bodies=bodies)

    assert [outcome.note for outcome in decided_outcomes] == [Reservation.Status.COMMITTED] * 3 + [
        Reservation.Status.RELEASED
    ]
    assert (begins(queries), locks(queries)) == (1, (1, 1))
    assert stock_of("prod-1", "prod-2") == [(46, 0), (98, 0)]
    # Each commit published the stock as its order left it, the next one seeing the last one's change.
    sales = [
        (row.detail["data"]["productId"], row.detail["data"]["onHand"], row.detail["data"]["reserved"])
        for row in OutboxEvent.objects.filter(detail_type="Stock Updated", detail__data__reasonCode="SALE").order_by(
            "created_at"
        )
    ]
    assert sorted(sales) == [("prod-1", 46, 0), ("prod-1", 48, 2), ("prod-2", 98, 2)]
    # A redelivered receive finds every event handled, and takes no lock.
    with CaptureQueriesContext(connection) as queries:
        again = handle_batch(service="inventory", bodies=bodies[::-1])
    assert [outcome.result for outcome in again] == [DeliveryResult.DUPLICATE] * 4
    assert locks(queries) == (0, 0)


def reserved_and_paid(orders) -> list[str]:
    """Inventory Reserved, then Payment Processed, for each order."""
    items = [{"productId": "prod-1", "quantity": 1}]
    paid = {**SAMPLE_DATA["Payment Processed"], "email": "ada@example.com"}
    return [envelope(INVENTORY_RESERVED, {"orderId": str(order.pk), "items": items}) for order in orders] + [
        envelope(PAYMENT_PROCESSED, {**paid, "orderId": str(order.pk)}) for order in orders
    ]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL's BEGIN does not pass through Django's cursor")
def test_orders_commit_a_receive_in_one_transaction_with_one_dedupe_per_handler(catalogue, monkeypatch):
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    orders = [order_services.place_order(request=PlaceOrderRequestFactory()) for _ in range(3)]
    bodies = reserved_and_paid(orders)

    with CaptureQueriesContext(connection) as queries:
        outcomes = handle_batch(service="orders", bodies=bodies)

    assert [outcome.result for outcome in outcomes] == [DeliveryResult.PROCESSED] * 6
    assert [outcome.note for outcome in outcomes] == [Order.Status.RESERVED] * 3 + [Order.Status.CONFIRMED] * 3
    assert begins(queries) == 1
    dedupes = [query for query in queries if "INSERT" in query["sql"] and "processed" in query["sql"].lower()]
    assert len(dedupes) == 2  # one per handler: orders.stock_reserved and orders.payment_processed
    # The receive's orders are locked first, in one query, and each reaction changes the locked one.
    assert sum(query["sql"].startswith('SELECT "orders_order"') for query in queries) == 1
    assert sorted(ProcessedEvent.objects.values_list("note", flat=True)) == sorted(outcome.note for outcome in outcomes)
    assert {order.status for order in Order.objects.all()} == {Order.Status.CONFIRMED}
    # A redelivered receive finds every event handled and changes nothing.
    again = handle_batch(service="orders", bodies=bodies[::-1])
    assert [outcome.result for outcome in again] == [DeliveryResult.DUPLICATE] * 6


def test_a_receive_mixing_a_set_based_handler_with_an_exact_one_is_handled_together(db, monkeypatch, caplog):
    # No service has both today; one that did must still share the batch, each event its set of one.
    caplog.set_level(logging.INFO, logger="eventbus.consuming")
    confirmed = []

    def note_confirmation(event):
        confirmed.append(event.event_id)
        return "noted"

    note_confirmation.__module__ = "audit.handlers"
    monkeypatch.setattr(registry, "_exact", {service: dict(routes) for service, routes in registry._exact.items()})
    registry.handles(ORDER_CONFIRMED, name="audit.note_confirmation", batchable=True)(note_confirmation)
    bodies = placed_events(1) + confirmed_events(1)

    outcomes = handle_batch(service="audit", bodies=bodies)

    assert [outcome.result for outcome in outcomes] == [DeliveryResult.PROCESSED] * 2
    assert "handling its messages one by one" not in caplog.text
    assert AuditEvent.objects.count() == len(confirmed) == 1
    assert ProcessedEvent.objects.get(handler="audit.note_confirmation").note == "noted"


def test_a_poisoned_message_in_a_batch_rolls_back_nothing_of_the_others(audit_handler):
    poisoned_event = uuid.uuid4()
    record = None

    def fail_on_the_poisoned_one(events):
        if any(event.event_id == poisoned_event for event in events):
            raise ValueError("poisoned")
        return record(events)

    record = audit_handler(fail_on_the_poisoned_one)
    first, second = placed_events(2)
    poisoned = envelope(ORDER_PLACED, order_placed_data(uuid.uuid4()), event_id=poisoned_event)

    outcomes = handle_batch(service="audit", bodies=[first, poisoned, second])

    assert [outcome.result for outcome in outcomes] == [
        DeliveryResult.PROCESSED,
        DeliveryResult.FAILED,
        DeliveryResult.PROCESSED,
    ]
    assert outcomes[1].note == "ValueError: poisoned"
    # Each good message written once (a leak of the rolled-back attempt would show as a duplicate).
    assert AuditEvent.objects.count() == ProcessedEvent.objects.count() == 2
    assert not AuditEvent.objects.filter(event_id=poisoned_event).exists()


def test_the_same_event_twice_in_one_batch_is_handled_once(db):
    body = placed_events(1)[0]
    outcomes = handle_batch(service="audit", bodies=[body, body])
    assert [outcome.result for outcome in outcomes] == [DeliveryResult.PROCESSED, DeliveryResult.DUPLICATE]
    assert AuditEvent.objects.count() == 1


def test_a_handler_that_swallows_a_rolled_back_error_is_not_acknowledged(audit_handler):
    def swallow(events):
        try:
            with transaction.atomic(savepoint=False):  # as a handler-path service opens
                raise ValueError("lost")
        except ValueError:
            return "carried on"

    audit_handler(swallow)
    outcomes = handle_batch(service="audit", bodies=placed_events(2))

    assert [outcome.result for outcome in outcomes] == [DeliveryResult.FAILED] * 2
    assert all("swallowed an error" in outcome.note for outcome in outcomes)
    assert not ProcessedEvent.objects.exists()


@pytest.mark.postgres
def test_two_workers_batching_the_same_events_in_opposite_orders_record_each_once():
    # Their INSERTs take the same unique-index entries in opposite orders, so PostgreSQL may pick one
    # batch as a deadlock victim: its messages are then handled alone and found to be duplicates.
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: `make test` runs it against a throwaway server")
    bodies = placed_events(10)

    results = race_in_opposite_orders(service="audit", bodies=bodies)
    processed = [outcome.result for outcomes in results for outcome in outcomes]
    assert processed.count(DeliveryResult.PROCESSED) == 10
    assert processed.count(DeliveryResult.DUPLICATE) == 10
    assert AuditEvent.objects.count() == ProcessedEvent.objects.count() == 10


@pytest.mark.postgres
def test_two_workers_counting_the_same_set_in_opposite_orders_never_deadlock(never_one_by_one):
    # Both sets touch the same hourly counts and order timelines in opposite receive orders. Rows go to
    # each statement in key order, so neither set is ever a deadlock victim handled again message by
    # message, and each event is counted once.
    for _ in range(5):
        orders = [uuid.uuid4() for _ in range(5)]
        placed = [envelope(ORDER_PLACED, order_placed_data(order_id)) for order_id in orders]
        items = [{"productId": "prod-1", "quantity": 1}]
        reserved = [envelope(INVENTORY_RESERVED, {"orderId": str(order_id), "items": items}) for order_id in orders]
        bodies = placed + reserved

        race_in_opposite_orders(service="analytics", bodies=bodies)
        assert sorted(HourlyEventCount.objects.values_list("detail_type", "count")) == [
            ("Inventory Reserved", 5),
            ("Order Placed", 5),
        ]
        assert OrderTimeline.objects.filter(placed_at__isnull=False, reserved_at__isnull=False).count() == 5
        HourlyEventCount.objects.all().delete()
        OrderTimeline.objects.all().delete()


@pytest.mark.postgres
def test_two_workers_batching_the_same_orders_in_opposite_orders_never_deadlock(catalogue, never_one_by_one):
    # Each batch locks the same five orders, and the copies of the same events, in opposite receive
    # orders. Deduped first and with the receive's orders locked ahead in pk order, neither batch is
    # ever a deadlock victim handled again message by message, and each event is handled once.
    for _ in range(5):
        orders = [order_services.place_order(request=PlaceOrderRequestFactory()) for _ in range(5)]
        bodies = reserved_and_paid(orders)

        results = race_in_opposite_orders(service="orders", bodies=bodies)
        handled = [outcome.result for outcomes in results for outcome in outcomes]
        assert handled.count(DeliveryResult.PROCESSED) == handled.count(DeliveryResult.DUPLICATE) == 10
        assert {Order.objects.get(pk=order.pk).status for order in orders} == {Order.Status.CONFIRMED}
    # Each handler's note was kept with its row, through the pipelined UPDATE. (The batch that took
    # an order's Payment Processed first saw its Inventory Reserved come late.)
    notes = list(ProcessedEvent.objects.filter(handler__startswith="orders.").values_list("note", flat=True))
    assert len(notes) == 5 * 10
    assert set(notes) <= {Order.Status.RESERVED, Order.Status.CONFIRMED, "ignored: order is CONFIRMED"}, notes
    assert Order.Status.CONFIRMED in notes


def inventory_receives_at_once(*receives: list[str]) -> list[list[str]]:
    """Each receive handled by a worker of its own, all at once: each receive's notes."""
    results = run_together([functools.partial(handle_batch, service="inventory", bodies=bodies) for bodies in receives])
    return [[outcome.note for outcome in outcomes] for outcomes in results]


@pytest.mark.postgres
def test_two_workers_batching_orders_that_share_stock_never_deadlock(catalogue, never_one_by_one):
    # Each worker's receive holds orders for two products, which the other's orders take in the
    # opposite order (order ids interleaved): locked order by order, the two batches would each hold
    # one product's row while waiting for the other's. Locked ahead, both take both rows first, in pk
    # order, so neither is ever a deadlock victim handled again message by message.
    for _ in range(5):
        orders = sorted((uuid.uuid4() for _ in range(8)), key=str)
        first, second = orders[0::2], orders[1::2]
        reserved = inventory_receives_at_once(
            placed_for(first, ["prod-1", "prod-2"] * 2), placed_for(second, ["prod-2", "prod-1"] * 2)
        )
        assert reserved == [[Reservation.Status.RESERVED] * 4] * 2
        settled = inventory_receives_at_once(decided(first, "Order Confirmed"), decided(second, "Order Cancelled"))
        assert settled == [[Reservation.Status.COMMITTED] * 4, [Reservation.Status.RELEASED] * 4]
    # Five rounds, each selling four units of each product and releasing four.
    assert stock_of("prod-1", "prod-2") == [(50 - 5 * 4, 0), (100 - 5 * 4, 0)]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="counts the statements on SQLite")
def test_payments_dedupe_a_receive_with_one_read_and_record_it_with_one_insert(db):
    # Payments commit their own steps, so each message still runs alone; what the receive shares is
    # the dedupe read and the insert of its rows. A gateway error fails its own message only.
    orders = [uuid.uuid4() for _ in range(3)]
    tokens = ["tok_visa", "tok_gatewayError", "tok_visa"]
    placed = [
        envelope(ORDER_PLACED, {**order_placed_data(order_id), "paymentToken": token})
        for order_id, token in zip(orders, tokens, strict=True)
    ]
    items = [{"productId": "prod-1", "quantity": 2}]
    reserved = [envelope(INVENTORY_RESERVED, {"orderId": str(order_id), "items": items}) for order_id in orders]
    bodies = [*placed, placed[0], *reserved]  # with a redelivered copy in the same receive

    with CaptureQueriesContext(connection) as queries:
        outcomes = handle_batch(service="payments", bodies=bodies)

    assert [outcome.result for outcome in outcomes] == [DeliveryResult.PROCESSED] * 3 + [DeliveryResult.DUPLICATE] + [
        DeliveryResult.PROCESSED,
        DeliveryResult.FAILED,
        DeliveryResult.PROCESSED,
    ]
    assert "GatewayError" in outcomes[5].note
    processed = [query["sql"] for query in queries if '"eventbus_processedevent"' in query["sql"]]
    assert [sql.split()[0] for sql in processed] == ["SELECT", "INSERT"]
    assert sorted(ProcessedEvent.objects.values_list("handler", "note")) == sorted(
        [("payments.remember_order", Payment.Status.PENDING)] * 3
        + [("payments.charge_reserved_order", Payment.Status.CHARGED)] * 2
    )
    assert [Payment.objects.get(order_id=order_id).status for order_id in orders] == [
        Payment.Status.CHARGED,
        Payment.Status.CHARGING,
        Payment.Status.CHARGED,
    ]
    # Its redelivery is handled; the others are found done.
    again = handle_batch(service="payments", bodies=bodies)
    assert [outcome.result for outcome in again].count(DeliveryResult.DUPLICATE) == 6


def test_inventory_gives_the_last_units_in_receive_order_as_it_would_one_by_one(catalogue, monkeypatch):
    # prod-3 has 5 on hand. Two orders of 5 arrive in one receive, the later one with the smaller
    # order id: the first to arrive gets them, whether the receive is handled together or not.
    monkeypatch.setattr(outbox, "wake_relay", lambda: None)
    smaller, larger = sorted((uuid.uuid4() for _ in range(2)), key=str)
    bodies = [
        envelope(ORDER_PLACED, order_placed_data(order_id, sku="prod-3", quantity=5)) for order_id in (larger, smaller)
    ]

    together = [outcome.note for outcome in handle_batch(service="inventory", bodies=bodies)]

    assert together == [Reservation.Status.RESERVED, Reservation.Status.FAILED]
    Reservation.objects.all().delete()
    ProcessedEvent.objects.all().delete()
    StockItem.objects.filter(product__sku="prod-3").update(reserved=0)
    assert [handle_message(service="inventory", body=body).note for body in bodies] == together


def test_a_handler_with_its_own_transactions_that_takes_one_event_runs_each_in_turn(db, monkeypatch):
    # Every payments handler takes sets; one that takes a single event still runs each message in
    # turn, under its event's causation, and a failing one fails alone.
    seen: list[tuple[str, str | None]] = []

    def ship_label(event):
        seen.append((event.data["trackingNumber"], events._causation_id.get()))
        if event.data["trackingNumber"] == "bad":
            raise RuntimeError("label printer jammed")
        return f"label for {event.data['trackingNumber']}"

    subscription = registry.Subscription(
        service="payments",
        handler_id="payments.ship_label",
        handler=ship_label,
        event_type=ORDER_SHIPPED,
        own_transactions=True,
    )
    monkeypatch.setitem(registry._exact["payments"], (ORDER_SHIPPED.source, ORDER_SHIPPED.detail_type), subscription)
    bodies = [
        envelope(ORDER_SHIPPED, {**SAMPLE_DATA["Order Shipped"], "trackingNumber": number})
        for number in ("1Z", "bad", "2Z")
    ]

    outcomes = handle_batch(service="payments", bodies=bodies)

    assert [(outcome.result, outcome.note) for outcome in outcomes] == [
        (DeliveryResult.PROCESSED, "label for 1Z"),
        (DeliveryResult.FAILED, "RuntimeError: label printer jammed"),
        (DeliveryResult.PROCESSED, "label for 2Z"),
    ]
    assert seen == [
        (number, json.loads(body)["detail"]["metadata"]["eventId"])
        for number, body in zip(("1Z", "bad", "2Z"), bodies, strict=True)
    ]
    assert sorted(ProcessedEvent.objects.values_list("note", flat=True)) == ["label for 1Z", "label for 2Z"]
