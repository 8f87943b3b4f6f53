"""The consumer against real SQS queues (moto) with its real poller: nothing here calls a handler directly."""

from __future__ import annotations

import io
import threading
import time
import uuid

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from eventbus import aws, topology
from eventbus.consuming import EventConsumer, QueuePoller
from eventbus.event_types import INVENTORY_RESERVED, ORDER_PLACED, PAYMENT_FAILED
from eventbus.models import DeliveryFailure, OutboxEvent, ProcessedEvent
from eventbus.worker import choose_services
from inventory.models import Reservation, StockItem
from orders import services as order_services
from orders.models import Order
from tests.events import envelope, order_placed_data
from tests.factories import PlaceOrderRequestFactory
from tests.helpers import dead_lettered_order, queue_depth, wait_for
from tests.helpers import poll_queue as poll
from tests.helpers import send_to_queue as send

pytestmark = pytest.mark.django_db(transaction=True)


def reserved_items(order_id) -> dict:
    return {"orderId": str(order_id), "items": [{"productId": "prod-1", "quantity": 1}]}


def stock(sku: str) -> StockItem:
    return StockItem.objects.get(product__sku=sku)


def test_the_same_message_delivered_twice_reserves_once(catalogue, quiet_relay):
    order_id = str(uuid.uuid4())
    body = envelope(ORDER_PLACED, order_placed_data(order_id))
    send("inventory", body)
    send("inventory", body)

    poll("inventory")

    assert stock("prod-1").reserved == 2
    assert ProcessedEvent.objects.filter(handler="inventory.reserve_stock").count() == 1
    assert OutboxEvent.objects.filter(detail_type="Inventory Reserved").count() == 1
    assert queue_depth(topology.SERVICE_QUEUES["inventory"].name) == 0  # both acknowledged


def test_a_replayed_event_with_a_new_envelope_id_is_skipped(catalogue, quiet_relay):
    order_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    send("inventory", envelope(ORDER_PLACED, order_placed_data(order_id), event_id=event_id))
    poll("inventory")
    send(
        "inventory",
        envelope(ORDER_PLACED, order_placed_data(order_id), event_id=event_id, **{"replay-name": "recovery-1"}),
    )
    poll("inventory")

    assert stock("prod-1").reserved == 2
    assert ProcessedEvent.objects.get(handler="inventory.reserve_stock").replay_name == ""


def test_the_producer_s_event_causes_what_the_handler_publishes(catalogue, quiet_relay):
    event_id = str(uuid.uuid4())
    send("inventory", envelope(ORDER_PLACED, order_placed_data(str(uuid.uuid4())), event_id=event_id))
    poll("inventory")
    reserved = OutboxEvent.objects.get(detail_type="Inventory Reserved")
    assert reserved.detail["metadata"]["causationId"] == event_id


def test_a_poison_message_reaches_the_dlq_while_the_message_behind_it_is_processed(catalogue, quiet_relay, settings):
    inventory = topology.SERVICE_QUEUES["inventory"]
    send("inventory", "{this is not an event")
    good_order = str(uuid.uuid4())
    send("inventory", envelope(ORDER_PLACED, order_placed_data(good_order)))

    poll("inventory", times=settings.SQS_MAX_RECEIVE_COUNT + 1)

    assert Reservation.objects.get(order_id=good_order).status == Reservation.Status.RESERVED
    assert queue_depth(inventory.name) == 0
    assert queue_depth(inventory.dlq_name) == 1
    failure = DeliveryFailure.objects.get()
    assert failure.reason.startswith("malformed: body is not JSON")
    assert failure.receive_count == settings.SQS_MAX_RECEIVE_COUNT

    shown = io.StringIO()
    call_command("dlq", "show", "inventory", stdout=shown)
    assert "body is not JSON" in shown.getvalue()
    listed = io.StringIO()
    call_command("dlq", "list", stdout=listed)
    assert [line.split()[-1] for line in listed.getvalue().splitlines() if line.startswith("inventory ")] == ["1"]


def test_an_event_that_fails_its_schema_is_not_deleted(catalogue, quiet_relay):
    send("inventory", envelope(ORDER_PLACED, {**order_placed_data(uuid.uuid4()), "totalAmount": 2.0}))
    poll("inventory")
    assert "data.totalAmount" in DeliveryFailure.objects.get().reason
    assert queue_depth(topology.SERVICE_QUEUES["inventory"].name) == 1
    assert not Reservation.objects.exists()


def test_a_failing_handler_rolls_back_its_work_and_its_processed_record(catalogue, quiet_relay):
    # Inventory Reserved for an order the orders service has never heard of: the handler raises.
    send("orders", envelope(INVENTORY_RESERVED, reserved_items(uuid.uuid4())))
    poll("orders")
    assert not ProcessedEvent.objects.exists()
    assert DeliveryFailure.objects.get().reason.startswith("failed: DoesNotExist")
    assert queue_depth(topology.SERVICE_QUEUES["orders"].name) == 1


def test_a_failing_message_in_a_receive_holds_back_no_other(catalogue, quiet_relay):
    # One receive of three: the middle one fails inside the order service (Order.DoesNotExist), whose
    # services open no savepoint; the other two are committed and deleted in the same poll.
    first, second = (order_services.place_order(request=PlaceOrderRequestFactory()) for _ in range(2))
    unknown = uuid.uuid4()
    for order_id in (first.pk, unknown, second.pk):
        send("orders", envelope(INVENTORY_RESERVED, reserved_items(order_id)))

    poller = QueuePoller(topology.SERVICE_QUEUES["orders"], threading.Event())
    assert poller.poll_once() == 3  # all three came in the one receive

    assert {order.status for order in Order.objects.filter(pk__in=[first.pk, second.pk])} == {Order.Status.RESERVED}
    assert set(ProcessedEvent.objects.values_list("handler", flat=True)) == {"orders.stock_reserved"}
    assert ProcessedEvent.objects.count() == 2
    assert "DoesNotExist" in DeliveryFailure.objects.get().reason
    assert queue_depth(topology.SERVICE_QUEUES["orders"].name) == 1  # only the poison is left, for a retry


def test_a_redriven_message_is_processed(catalogue, quiet_relay, settings):
    orders_queue = topology.SERVICE_QUEUES["orders"]
    order = dead_lettered_order(settings)
    order.save(force_insert=True)  # restored

    out = io.StringIO()
    call_command("dlq", "redrive", "orders", "--max", "5", stdout=out)
    poll("orders")

    assert "Moved 1 message(s) from order-processing-queue-dlq to order-processing-queue." in out.getvalue()
    order.refresh_from_db()
    assert order.status == Order.Status.RESERVED
    assert queue_depth(orders_queue.dlq_name) == 0


def test_redrive_is_bounded(catalogue, quiet_relay):
    sqs = aws.client("sqs")
    dlq_url = sqs.get_queue_url(QueueName=topology.SERVICE_QUEUES["audit"].dlq_name)["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=dlq_url, MessageBody=f"letter {n}")
    call_command("dlq", "redrive", "audit-queue-dlq", "--max", "3", stdout=io.StringIO())
    assert queue_depth(topology.SERVICE_QUEUES["audit"].dlq_name) == 2
    assert queue_depth(topology.SERVICE_QUEUES["audit"].name) == 3


def test_an_event_a_service_has_no_handler_for_is_kept_for_the_dlq(catalogue, quiet_relay):
    send(
        "inventory",
        envelope(PAYMENT_FAILED, {"orderId": str(uuid.uuid4()), "reasonCode": "DECLINED", "amount": "1.00"}),
    )
    poll("inventory")
    assert DeliveryFailure.objects.get().reason == "unroutable: inventory has no handler for it"


def test_stopping_the_consumer_returns_within_the_long_poll_wait(provisioned):
    consumer = EventConsumer(["inventory", "orders"])
    consumer.start()
    stopped = threading.Event()
    threading.Thread(target=lambda: (consumer.stop(), stopped.set())).start()
    assert stopped.wait(timeout=10)
    assert not any(poller.is_alive() for poller in consumer.pollers)


def test_audit_lets_events_gather_after_a_receive_that_was_not_full(quiet_relay, settings, monkeypatch):
    settings.EVENT_BATCHING_WINDOW_MS = 1500
    settings.EVENT_CONSUMER_WAIT_SECONDS = 1
    sqs = aws.client("sqs")
    receive, received = sqs.receive_message, []

    def counted_receive(**kwargs):
        response = receive(**kwargs)
        received.append(len(response.get("Messages", [])))
        return response

    monkeypatch.setattr(sqs, "receive_message", counted_receive)
    stop = threading.Event()
    poller = QueuePoller(topology.SERVICE_QUEUES["audit"], stop)
    send("audit", envelope(ORDER_PLACED, order_placed_data(uuid.uuid4())))
    poller.start()
    try:
        wait_for(lambda: AuditEvent.objects.count() == 1, timeout=10)
        for pair in range(2):
            if pair:
                time.sleep(0.3)  # apart: a poller that received at once would take them in two receives
            for _ in range(2):
                send("audit", envelope(ORDER_PLACED, order_placed_data(uuid.uuid4())))
        wait_for(lambda: AuditEvent.objects.count() == 5, timeout=10)
    finally:
        stop.set()
        poller.join(10)

    assert [count for count in received if count] == [1, 4]


@pytest.mark.parametrize(
    ("option", "configured", "chosen"),
    [
        (None, [], None),
        ("inventory,orders", [], ["inventory", "orders"]),
        (None, ["audit"], ["audit"]),
        ("none", ["audit"], []),
    ],
)
def test_which_services_a_worker_consumes(option, configured, chosen):
    assert choose_services(option, configured) == chosen


def test_an_unknown_service_is_refused():
    with pytest.raises(ValueError, match="unknown event consumer"):
        EventConsumer(["shipping"])
