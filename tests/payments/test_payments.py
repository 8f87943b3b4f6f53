from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from eventbus.models import OutboxEvent
from payments.gateways import GatewayError
from payments.models import Payment, Refund, SimulatedGatewayRequest
from tests.payments import settling
from tests.payments.recording_gateway import Crash

# On both databases: payments lock their row with SQL that SQLite ignores.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]


def placed(order_id: uuid.UUID, token: str = "tok_visa") -> Payment:
    return settling.remember_order(
        order_id=order_id, amount=Decimal("59.98"), currency="USD", payment_token=token, email="c@example.com"
    )


def events(detail_type: str) -> list[dict]:
    return [row.detail["data"] for row in OutboxEvent.objects.filter(detail_type=detail_type)]


@pytest.mark.parametrize("placed_first", [True, False], ids=["placed-then-reserved", "reserved-then-placed"])
def test_an_order_is_charged_once_it_is_known_and_its_stock_reserved(placed_first, recording):
    order_id = uuid.uuid4()
    steps = [lambda: placed(order_id), lambda: settling.charge_reserved_order(order_id=order_id)]
    for step in steps if placed_first else reversed(steps):
        step()

    payment = Payment.objects.get(order_id=order_id)
    assert payment.status == Payment.Status.CHARGED
    assert recording == [("charge", str(order_id))]
    assert events("Payment Processed") == [
        {
            "orderId": str(order_id),
            "email": "c@example.com",
            "paymentId": str(payment.id),
            "amount": "59.98",
            "currency": "USD",
        }
    ]


def test_a_repeated_reservation_never_charges_twice(recording):
    order_id = uuid.uuid4()
    placed(order_id)
    settling.charge_reserved_order(order_id=order_id)
    settling.charge_reserved_order(order_id=order_id)
    assert recording == [("charge", str(order_id))]
    assert len(events("Payment Processed")) == 1


def test_a_declined_card_publishes_payment_failed(recording):
    order_id = uuid.uuid4()
    placed(order_id, token="tok_chargeDeclined")
    settling.charge_reserved_order(order_id=order_id)
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.DECLINED
    [failed] = events("Payment Failed")
    assert (failed["reasonCode"], failed["amount"]) == ("DECLINED", "59.98")


def test_an_order_cancelled_before_its_reservation_is_never_charged(recording):
    order_id = uuid.uuid4()
    settling.settle_cancelled_order(order_id=order_id)  # Order Cancelled overtook everything
    placed(order_id)
    settling.charge_reserved_order(order_id=order_id)
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.VOIDED
    assert recording == []


def test_cancelling_a_charged_order_refunds_it_once(recording):
    order_id = uuid.uuid4()
    placed(order_id)
    settling.charge_reserved_order(order_id=order_id)
    settling.settle_cancelled_order(order_id=order_id)
    settling.settle_cancelled_order(order_id=order_id)

    payment = Payment.objects.get(order_id=order_id)
    assert payment.status == Payment.Status.REFUNDED
    assert Refund.objects.get(payment=payment).amount == Decimal("59.98")
    assert recording == [("charge", str(order_id)), ("refund", f"refund:{order_id}")]
    [refunded] = events("Payment Refunded")
    assert (refunded["paymentId"], refunded["amount"]) == (str(payment.id), "59.98")


def provider_requests(order_id: uuid.UUID) -> list[tuple[str, bool]]:
    """What the provider itself recorded for the order: (operation, approved) per idempotency key."""
    return sorted(
        SimulatedGatewayRequest.objects.filter(idempotency_key__in=[str(order_id), f"refund:{order_id}"]).values_list(
            "operation", "approved"
        )
    )


def test_a_gateway_error_keeps_the_attempt_and_fails_the_delivery_so_it_is_retried(recording):
    order_id = uuid.uuid4()
    placed(order_id, token="tok_gatewayError")
    with pytest.raises(GatewayError):
        settling.charge_reserved_order(order_id=order_id)

    payment = Payment.objects.get(order_id=order_id)
    # Committed before the call, so a redelivery (or a restarted worker) counts on from here.
    assert (payment.status, payment.charge_attempts, payment.stock_reserved) == (Payment.Status.CHARGING, 1, True)
    assert payment.last_gateway_error == "simulated gateway timeout"
    assert not events("Payment Failed")


def test_the_last_allowed_gateway_error_fails_the_payment_with_gateway_error(recording, settings):
    settings.PAYMENT_MAX_GATEWAY_ATTEMPTS = 3
    order_id = uuid.uuid4()
    placed(order_id, token="tok_gatewayError")
    for _ in range(2):
        with pytest.raises(GatewayError):
            settling.charge_reserved_order(order_id=order_id)  # the same message, redelivered

    payment = settling.charge_reserved_order(order_id=order_id)  # the third attempt gives up, and says so

    assert (payment.status, payment.charge_attempts, payment.failure_code) == (
        Payment.Status.DECLINED,
        3,
        "GATEWAY_ERROR",
    )
    [failed] = events("Payment Failed")
    assert failed["reasonCode"] == "GATEWAY_ERROR"
    assert failed["reason"] == "The payment provider did not answer after 3 attempts."
    assert provider_requests(order_id) == []  # nothing reached the provider, so nothing was charged


def test_the_services_refuse_to_call_the_gateway_inside_a_caller_s_transaction():
    # The gateway call would hold the caller's locks for its whole latency.
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        placed(uuid.uuid4())


@pytest.mark.parametrize("point", ["before charge", "after charge"])
def test_a_charge_the_worker_died_in_is_finished_by_the_next_delivery_with_the_same_key(point, recording, crash_at):
    order_id = uuid.uuid4()
    placed(order_id)
    crash_at(point)
    with pytest.raises(Crash):
        settling.charge_reserved_order(order_id=order_id)
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.CHARGING

    payment = settling.charge_reserved_order(order_id=order_id)  # the redelivery

    assert (payment.status, payment.charge_attempts) == (Payment.Status.CHARGED, 2)
    assert provider_requests(order_id) == [("charge", True)]
    assert {key for _, key in recording} == {str(order_id)}
    assert len(events("Payment Processed")) == 1


def test_a_cancel_that_finds_a_charge_unanswered_answers_it_and_refunds_it(recording, crash_at):
    order_id = uuid.uuid4()
    placed(order_id)
    crash_at("after charge")  # the provider charged; payments never heard
    with pytest.raises(Crash):
        settling.charge_reserved_order(order_id=order_id)

    payment = settling.settle_cancelled_order(order_id=order_id)

    assert payment.status == Payment.Status.REFUNDED
    assert provider_requests(order_id) == [("charge", True), ("refund", True)]
    assert len(events("Payment Processed")) == len(events("Payment Refunded")) == 1


def test_a_refund_the_worker_died_in_is_finished_by_the_next_delivery_with_the_same_key(recording, crash_at):
    order_id = uuid.uuid4()
    placed(order_id)
    settling.charge_reserved_order(order_id=order_id)
    crash_at("after refund")
    with pytest.raises(Crash):
        settling.settle_cancelled_order(order_id=order_id)
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.REFUNDING

    payment = settling.settle_cancelled_order(order_id=order_id)

    assert (payment.status, payment.refund_attempts) == (Payment.Status.REFUNDED, 2)
    assert provider_requests(order_id) == [("charge", True), ("refund", True)]
    assert Refund.objects.filter(payment=payment).count() == 1
    assert len(events("Payment Refunded")) == 1
