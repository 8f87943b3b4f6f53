"""Payments on real queues (moto): a delivery that dies mid-charge stays on the queue and its
redelivery finishes the charge with the same key; a gateway that keeps failing ends the payment as
Payment Failed (GATEWAY_ERROR) before the message reaches its DLQ, so the order cancels and the
customer hears why."""

from __future__ import annotations

import threading

import pytest

from eventbus import outbox, registry, topology
from eventbus.consuming import QueuePoller
from eventbus.models import OutboxEvent, ProcessedEvent
from notifications.models import Notification
from notifications.services import render
from orders.models import Order
from payments.models import Payment, SimulatedGatewayRequest
from tests.helpers import place_demo_order, queue_depth

pytestmark = pytest.mark.django_db


@pytest.fixture
def pollers(provisioned, settings):
    settings.EVENT_CONSUMER_WAIT_SECONDS = 0
    return {
        service: QueuePoller(topology.SERVICE_QUEUES[service], threading.Event()) for service in registry.services()
    }


def settle(pollers: dict[str, QueuePoller], *, max_rounds: int = 30) -> None:
    """Publish the outbox and poll every queue until nothing is left to publish or receive."""
    for _ in range(max_rounds):
        outbox.relay_pending()
        received = sum(poller.poll_once() for poller in pollers.values())
        if not received and not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists():
            return
    raise AssertionError("the queues did not settle")


def dead_letters() -> int:
    return sum(queue_depth(topology.SERVICE_QUEUES[service].dlq_name) for service in registry.services())


@pytest.mark.parametrize("point", ["before charge", "after charge"])
def test_a_worker_dying_mid_charge_leaves_the_message_whose_redelivery_charges_once(pollers, crash_at, point):
    order = place_demo_order()
    crash_at(point)

    settle(pollers)

    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED
    payment = Payment.objects.get(order_id=order.pk)
    assert (payment.status, payment.charge_attempts) == (Payment.Status.CHARGED, 2)
    assert SimulatedGatewayRequest.objects.filter(idempotency_key=str(order.pk)).count() == 1
    assert OutboxEvent.objects.filter(correlation_id=str(order.pk), detail_type="Payment Processed").count() == 1
    # The charging delivery was recorded as handled only once it was finished, by its redelivery, with
    # what the handler said it did (the order's timeline shows it).
    charged = ProcessedEvent.objects.get(handler__startswith="payments.charge")
    assert charged.note == Payment.Status.CHARGED
    assert queue_depth(topology.SERVICE_QUEUES["payments"].name) == 0
    assert dead_letters() == 0


def test_a_gateway_that_keeps_failing_cancels_the_order_with_the_reason_before_the_dlq(pollers, settings):
    assert settings.PAYMENT_MAX_GATEWAY_ATTEMPTS < settings.SQS_MAX_RECEIVE_COUNT
    order = place_demo_order(token="tok_gatewayError")

    settle(pollers)

    order.refresh_from_db()
    assert (order.status, order.cancellation_reason_code) == (Order.Status.CANCELLED, "PAYMENT_FAILED")
    payment = Payment.objects.get(order_id=order.pk)
    assert (payment.status, payment.failure_code) == (Payment.Status.DECLINED, "GATEWAY_ERROR")
    assert payment.charge_attempts == settings.PAYMENT_MAX_GATEWAY_ATTEMPTS
    assert dead_letters() == 0
    notification = Notification.objects.get(correlation_id=str(order.pk), kind=Notification.Kind.PAYMENT_FAILED)
    assert notification.recipient == order.email
    _, text, _ = render(notification)
    assert "could not reach our payment provider" in text
    assert "not with your card" in text
    # One email says why; no second "order cancelled" email for the same failure.
    assert not Notification.objects.filter(correlation_id=str(order.pk), kind=Notification.Kind.ORDER_CANCELLED)
