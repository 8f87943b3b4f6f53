"""A receive stays hidden from other consumers for as long as its poller handles it, and no longer
(eventbus.visibility), on moto's queues."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from eventbus import aws, outbox, registry, topology, visibility
from eventbus.consuming import QueuePoller
from eventbus.models import DeliveryFailure
from eventbus.visibility import VisibilityKeeper
from payments.models import Payment, SimulatedGatewayRequest
from tests.helpers import place_demo_order, queue_depth, send_to_queue, wait_for


def receive_now(queue_url: str) -> list[str]:
    received = aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [message["Body"] for message in received.get("Messages", [])]


def received_from_new_queue(body: str, *, visibility_timeout: int) -> tuple[str, dict]:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="kept", Attributes={"VisibilityTimeout": str(visibility_timeout)})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=body)
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    return url, message


@pytest.fixture
def extensions(monkeypatch):
    """The keeper's ChangeMessageVisibilityBatch calls, each through `extensions.call` (by default moto's)."""
    sqs = aws.client("sqs")
    made: list[dict] = []

    def change_message_visibility_batch(**kwargs):
        made.append(kwargs)
        return made_by.call(sqs, **kwargs)

    made_by = SimpleNamespace(made=made, call=lambda sqs, **kwargs: sqs.change_message_visibility_batch(**kwargs))
    client = SimpleNamespace(change_message_visibility_batch=change_message_visibility_batch)
    monkeypatch.setattr(visibility, "aws", SimpleNamespace(client=lambda name, **options: client))
    return made_by


@pytest.fixture
def keeper():
    """A started keeper for the queue `received_from_new_queue` makes, stopped after the test."""
    keepers: list[VisibilityKeeper] = []

    def start(visibility_timeout: int) -> VisibilityKeeper:
        keeper = VisibilityKeeper(queue_name="kept", visibility_timeout=visibility_timeout)
        keeper.start()
        keepers.append(keeper)
        return keeper

    yield start
    for started in keepers:
        started.stop()


@pytest.mark.usefixtures("aws")
def test_a_watched_receive_stays_hidden_past_its_timeout_and_is_left_to_it_once_unwatched(keeper):
    url, message = received_from_new_queue("slow", visibility_timeout=2)
    kept = keeper(2)

    kept.watch(queue_url=url, receipt_handles=[message["ReceiptHandle"]])
    time.sleep(3.4)  # hidden for 2 s at the receive, then again from 1 s, 2 s and 3 s

    assert receive_now(url) == []

    kept.unwatch()
    time.sleep(2.4)  # the last extension, at 3 s, runs out at 5 s

    assert receive_now(url) == ["slow"]


@pytest.mark.usefixtures("aws")
def test_no_extension_lands_after_unwatch_so_a_failed_messages_back_off_stands(keeper, extensions):
    url, message = received_from_new_queue("failed", visibility_timeout=2)

    def in_flight_when_the_poller_settles(sqs, **kwargs):
        time.sleep(0.5)
        return sqs.change_message_visibility_batch(**kwargs)

    extensions.call = in_flight_when_the_poller_settles
    kept = keeper(2)
    kept.watch(queue_url=url, receipt_handles=[message["ReceiptHandle"]])
    time.sleep(1.1)  # the extension began at 1 s and lands at 1.5 s
    kept.unwatch()
    aws.client("sqs").change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )  # the poller's back-off: retry at once
    time.sleep(0.6)

    assert receive_now(url) == ["failed"]


@pytest.mark.usefixtures("aws")
def test_a_failed_extension_is_tried_again_before_the_messages_show(keeper, extensions):
    url, message = received_from_new_queue("slow", visibility_timeout=2)

    def throttled_once(sqs, **kwargs):
        if len(extensions.made) == 1:
            time.sleep(0.3)  # botocore's attempts
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "ChangeVisibility")
        return sqs.change_message_visibility_batch(**kwargs)

    extensions.call = throttled_once
    keeper(2).watch(queue_url=url, receipt_handles=[message["ReceiptHandle"]])
    time.sleep(2.15)  # the receive hid it until 2 s; the failed extension ended at 1.3 s

    assert receive_now(url) == []


@pytest.mark.usefixtures("aws")
def test_the_keeper_outlives_an_unexpected_error_and_keeps_the_next_receive(keeper, extensions):
    sqs = aws.client("sqs")
    url, first = received_from_new_queue("first", visibility_timeout=2)

    def broken_once(sqs, **kwargs):
        if len(extensions.made) == 1:
            raise RuntimeError("not botocore's")
        return sqs.change_message_visibility_batch(**kwargs)

    extensions.call = broken_once
    kept = keeper(2)
    kept.watch(queue_url=url, receipt_handles=[first["ReceiptHandle"]])
    time.sleep(1.2)  # the extension at 1 s raised
    kept.unwatch()
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    sqs.send_message(QueueUrl=url, MessageBody="second")
    [second] = sqs.receive_message(QueueUrl=url)["Messages"]
    kept.watch(queue_url=url, receipt_handles=[second["ReceiptHandle"]])
    time.sleep(3)  # the receive hid it for 2 s

    assert receive_now(url) == []


@pytest.mark.usefixtures("aws")
def test_a_queue_that_hides_nothing_is_not_kept(keeper, extensions):
    url, message = received_from_new_queue("shown", visibility_timeout=0)

    keeper(0).watch(queue_url=url, receipt_handles=[message["ReceiptHandle"]])
    time.sleep(0.3)

    assert extensions.made == []


@pytest.fixture
def hidden_for_two_seconds(monkeypatch):
    """The service queues are provisioned with a visibility timeout of 2 s."""
    for service, queue in list(topology.SERVICE_QUEUES.items()):
        monkeypatch.setitem(topology.SERVICE_QUEUES, service, dataclasses.replace(queue, visibility_timeout=2))


@pytest.mark.django_db(transaction=True)
def test_a_failed_message_comes_back_after_its_back_off(hidden_for_two_seconds, provisioned, settings):
    settings.EVENT_CONSUMER_WAIT_SECONDS = 1
    settings.EVENT_RETRY_BASE_SECONDS = 2  # the whole timeout: a keeper still at it would hide it every second
    stop = threading.Event()
    inventory = QueuePoller(topology.SERVICE_QUEUES["inventory"], stop)
    send_to_queue("inventory", "not an event")

    inventory.start()
    try:
        # Received, failed, hidden for 2 s, received again: never kept hidden once its receive ended.
        wait_for(lambda: DeliveryFailure.objects.filter(receive_count=2).exists(), timeout=6, what="a retry")
    finally:
        stop.set()
        inventory.join(10)


@pytest.mark.django_db(transaction=True)
def test_a_receive_that_outlasts_the_timeout_is_not_delivered_again_meanwhile(
    hidden_for_two_seconds, provisioned, settings, caplog
):
    settings.EVENT_CONSUMER_WAIT_SECONDS = 1
    stop = threading.Event()
    pollers = {service: QueuePoller(topology.SERVICE_QUEUES[service], stop) for service in registry.services()}
    orders = [place_demo_order(), place_demo_order()]
    outbox.relay_pending()
    pollers["payments"].poll_once()  # the orders placed, remembered
    pollers["inventory"].poll_once()  # their stock reserved
    settings.PAYMENT_SIMULATED_LATENCY_MS = 1500  # two charges, one after the other: 3 s
    outbox.relay_pending()
    payments = pollers["payments"]
    url = aws.client("sqs").get_queue_url(QueueName=payments.queue.name)["QueueUrl"]
    delivered_elsewhere: list[str] = []

    def charged_while_another_worker_receives() -> bool:
        delivered_elsewhere.extend(receive_now(url))
        return Payment.objects.filter(status=Payment.Status.CHARGED).count() == 2

    caplog.set_level(logging.INFO, logger="eventbus.visibility")
    payments.start()  # as a worker runs it
    try:
        wait_for(lambda: Payment.objects.filter(status=Payment.Status.CHARGING).count() == 2, what="charging")
        wait_for(charged_while_another_worker_receives, interval=0.2, what="both charged")
    finally:
        stop.set()
        payments.join(10)

    assert delivered_elsewhere == []
    assert "is still being handled" in caplog.text  # the receive did outlast its timeout
    for order in orders:
        assert SimulatedGatewayRequest.objects.filter(idempotency_key=str(order.pk)).count() == 1
    wait_for(lambda: queue_depth(payments.queue.name) == 0, what="the receive deleted")
