from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from eventbus.models import OutboxEvent
from payments import services
from payments.gateways import GatewayError, SimulatedGateway, _configured
from payments.models import Payment, Refund
from tests.payments import recording_gateway

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def recording(settings):
    settings.PAYMENT_GATEWAY = "tests.payments.recording_gateway.RecordingGateway"
    recording_gateway.calls.clear()
    _configured.cache_clear()
    yield recording_gateway.calls
    _configured.cache_clear()


def placed(order_id: uuid.UUID, token: str = "tok_visa") -> Payment:
    return services.remember_order(
        order_id=order_id, amount=Decimal("59.98"), currency="USD", payment_token=token, email="c@example.com"
    )


def events(detail_type: str) -> list[dict]:
    return [row.detail["data"] for row in OutboxEvent.objects.filter(detail_type=detail_type)]


@pytest.mark.parametrize("placed_first", [True, False], ids=["placed-then-reserved", "reserved-then-placed"])
def test_an_order_is_charged_once_it_is_known_and_its_stock_reserved(placed_first, recording):
    order_id = uuid.uuid4()
    steps = [lambda: placed(order_id), lambda: services.charge_reserved_order(order_id=order_id)]
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
    services.charge_reserved_order(order_id=order_id)
    services.charge_reserved_order(order_id=order_id)
    assert recording == [("charge", str(order_id))]
    assert len(events("Payment Processed")) == 1


def test_a_declined_card_publishes_payment_failed(recording):
    order_id = uuid.uuid4()
    placed(order_id, token="tok_chargeDeclined")
    services.charge_reserved_order(order_id=order_id)
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.DECLINED
    [failed] = events("Payment Failed")
    assert (failed["reasonCode"], failed["amount"]) == ("DECLINED", "59.98")


def test_a_gateway_error_rolls_back_so_the_message_is_retried(recording):
    order_id = uuid.uuid4()
    placed(order_id, token="tok_gatewayError")
    # The service opens no savepoint of its own (docs/architecture.md, "Savepoints"): a caller that
    # catches its errors and carries on opens one, as the consumer does around each delivery.
    with pytest.raises(GatewayError), transaction.atomic():
        services.charge_reserved_order(order_id=order_id)
    payment = Payment.objects.get(order_id=order_id)
    assert (payment.status, payment.stock_reserved) == (Payment.Status.PENDING, False)
    assert not events("Payment Failed")


def test_an_order_cancelled_before_its_reservation_is_never_charged(recording):
    order_id = uuid.uuid4()
    services.settle_cancelled_order(order_id=order_id)  # Order Cancelled overtook everything
    placed(order_id)
    services.charge_reserved_order(order_id=order_id)
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.VOIDED
    assert recording == []


def test_cancelling_a_charged_order_refunds_it_once(recording):
    order_id = uuid.uuid4()
    placed(order_id)
    services.charge_reserved_order(order_id=order_id)
    services.settle_cancelled_order(order_id=order_id)
    services.settle_cancelled_order(order_id=order_id)

    payment = Payment.objects.get(order_id=order_id)
    assert payment.status == Payment.Status.REFUNDED
    assert Refund.objects.get(payment=payment).amount == Decimal("59.98")
    assert recording == [("charge", str(order_id)), ("refund", f"refund:{order_id}")]
    [refunded] = events("Payment Refunded")
    assert (refunded["paymentId"], refunded["amount"]) == (str(payment.id), "59.98")


def test_the_simulated_gateway_is_deterministic_and_declines_at_the_configured_rate():
    gateway = SimulatedGateway(decline_rate=0.25)
    outcomes = [
        gateway.charge(idempotency_key=str(n), amount=Decimal(1), currency="USD", token="tok_visa").approved
        for n in range(2000)
    ]
    assert 0.2 < outcomes.count(False) / len(outcomes) < 0.3
    again = [
        gateway.charge(idempotency_key=str(n), amount=Decimal(1), currency="USD", token="tok_visa").approved
        for n in range(2000)
    ]
    assert outcomes == again
    first = gateway.charge(idempotency_key="k", amount=Decimal(1), currency="USD", token="tok_visa")
    assert first == gateway.charge(idempotency_key="k", amount=Decimal(1), currency="USD", token="tok_visa")
