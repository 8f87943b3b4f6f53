"""A receive stays hidden from other consumers for as long as its poller handles it, and no longer
(eventbus.visibility), on moto's queues."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from eventbus import aws, outbox, registry, topology
from eventbus.consuming import QueuePoller
from eventbus.visibility import VisibilityKeeper
from payments.models import Payment, SimulatedGatewayRequest
from tests.helpers import place_demo_order, queue_depth

pytestmark = pytest.mark.django_db


def receive_now(queue_url: str) -> list[str]:
    received = aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [message["Body"] for message in received.get("Messages", [])]


@pytest.mark.usefixtures("aws")
def test_a_watched_receive_stays_hidden_past_its_timeout_and_is_left_to_it_once_unwatched():
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="kept", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="slow")
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    keeper = VisibilityKeeper(queue_name="kept", visibility_timeout=1)
    keeper.start()
    try:
        keeper.watch(queue_url=url, receipt_handles=[message["ReceiptHandle"]])
        time.sleep(1.7)  # hidden for 1 s at the receive, then again from 0.5 s, 1 s and 1.5 s

        assert receive_now(url) == []

        keeper.unwatch()
        time.sleep(1.3)  # the last extension, at 1.5 s, runs out at 2.5 s
    finally:
        keeper.stop()

    assert receive_now(url) == ["slow"]


@pytest.fixture
def payments_hidden_for_two_seconds(monkeypatch):
    queue = dataclasses.replace(topology.SERVICE_QUEUES["payments"], visibility_timeout=2)
    monkeypatch.setitem(topology.SERVICE_QUEUES, "payments", queue)
    return queue


def test_a_receive_that_outlasts_the_timeout_is_not_delivered_again_meanwhile(
    payments_hidden_for_two_seconds, provisioned, settings
):
    settings.EVENT_CONSUMER_WAIT_SECONDS = 0
    pollers = {
        service: QueuePoller(topology.SERVICE_QUEUES[service], threading.Event()) for service in registry.services()
    }
    orders = [place_demo_order(), place_demo_order()]
    outbox.relay_pending()
    pollers["payments"].poll_once()  # the orders placed, remembered
    pollers["inventory"].poll_once()  # their stock reserved
    outbox.relay_pending()
    settings.PAYMENT_SIMULATED_LATENCY_MS = 1500  # two charges, one after the other: 3 s
    payments = pollers["payments"]
    url = aws.client("sqs").get_queue_url(QueueName=payments.queue.name)["QueueUrl"]
    delivered_elsewhere: list[str] = []
    charged = threading.Event()

    def another_worker() -> None:
        while not charged.wait(0.2):
            delivered_elsewhere.extend(receive_now(url))

    payments.keeper.start()
    elsewhere = threading.Thread(target=another_worker)
    elsewhere.start()
    started = time.monotonic()
    try:
        received = payments.poll_once()
    finally:
        charged.set()
        elsewhere.join()
        payments.keeper.stop()

    assert (received, time.monotonic() - started > 2) == (2, True)  # the receive did outlast its timeout
    assert delivered_elsewhere == []
    for order in orders:
        assert Payment.objects.get(order_id=order.pk).status == Payment.Status.CHARGED
        assert SimulatedGatewayRequest.objects.filter(idempotency_key=str(order.pk)).count() == 1
    assert queue_depth(payments.queue.name) == 0
