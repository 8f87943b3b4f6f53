"""Giving up on a failing gateway never leaves the provider holding an order's money: only calls
answered with a transient error count towards PAYMENT_MAX_GATEWAY_ATTEMPTS, and an approval that
comes back after payments gave up is refunded. Found by an adversarial review (2026-11-27)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from eventbus.consuming import handle_message
from eventbus.event_types import INVENTORY_RESERVED, ORDER_CANCELLED
from eventbus.models import OutboxEvent
from payments.gateways import GatewayError, _configured
from payments.models import Payment, Refund, SimulatedGatewayRequest
from tests.events import SAMPLE_DATA, envelope
from tests.helpers import run_together, wait_for
from tests.payments import recording_gateway, settling
from tests.payments.recording_gateway import Crash, RecordingGateway


def _remember(order_id: uuid.UUID) -> None:
    settling.remember_order(
        order_id=order_id, amount=Decimal("59.98"), currency="USD", payment_token="tok_visa", email="c@example.com"
    )


def _charged_at_provider(order_id: uuid.UUID) -> int:
    return SimulatedGatewayRequest.objects.filter(
        idempotency_key=str(order_id), operation="charge", approved=True
    ).count()


@pytest.mark.django_db
def test_a_charge_whose_answer_was_lost_does_not_count_as_a_failure(settings, crash_at, recording):
    settings.PAYMENT_MAX_GATEWAY_ATTEMPTS = 2
    order_id = uuid.uuid4()
    _remember(order_id)
    crash_at("after charge")  # attempt 1: the provider charges, and the worker dies before recording it
    with pytest.raises(Crash):
        settling.charge_reserved_order(order_id=order_id)
    recording_gateway.charge_timeouts_left = 1  # attempt 2: a timeout that never reached the provider
    with pytest.raises(GatewayError):
        settling.charge_reserved_order(order_id=order_id)

    payment = settling.charge_reserved_order(order_id=order_id)  # attempt 3: the first answer, by its key

    assert (payment.status, payment.charge_attempts, payment.charge_failures) == (Payment.Status.CHARGED, 3, 1)
    assert recording == [("charge", str(order_id))] * 2
    assert _charged_at_provider(order_id) == 1
    assert settling.settle_cancelled_order(order_id=order_id).status == Payment.Status.REFUNDED


class RacingGateway(RecordingGateway):
    """Two calls with one key at once: the first waits until the other's attempt is recorded, then
    times out; the second reaches the provider, which charges, and its answer comes back only once
    `second_answers_when(payment)` holds."""

    order_id: uuid.UUID
    attempts_before: int
    second_answers_when: Callable[[Payment], bool]
    _lock = threading.Lock()
    _calls = 0

    def charge(self, **kwargs):
        with RacingGateway._lock:
            RacingGateway._calls += 1
            mine = RacingGateway._calls
        racer = type(self)
        if mine == 1:
            wait_for(lambda: self._payment().charge_attempts == racer.attempts_before + 2, interval=0.02, timeout=10)
            raise GatewayError("the provider did not answer in time (simulated)")
        result = super().charge(**kwargs)
        wait_for(lambda: racer.second_answers_when(self._payment()), interval=0.02, timeout=10)
        return result

    def _payment(self) -> Payment:
        return Payment.objects.get(order_id=type(self).order_id)


@pytest.fixture
def racing(settings):
    """Inventory Reserved delivered twice at once (at-least-once delivery), to two workers, whose calls
    race as RacingGateway says; returns a function that runs the race for an order."""
    settings.PAYMENT_GATEWAY = "tests.payments.test_giving_up.RacingGateway"
    settings.PAYMENT_MAX_GATEWAY_ATTEMPTS = 2
    _configured.cache_clear()

    def race(order_id: uuid.UUID, *, second_answers_when: Callable[[Payment], bool]) -> list[object]:
        RacingGateway._calls = 0
        RacingGateway.order_id = order_id
        RacingGateway.attempts_before = Payment.objects.get(order_id=order_id).charge_attempts
        RacingGateway.second_answers_when = staticmethod(second_answers_when)
        reserved = envelope(
            INVENTORY_RESERVED, {"orderId": str(order_id), "items": [{"productId": "p-1", "quantity": 1}]}
        )
        outcomes = run_together([lambda: handle_message(service="payments", body=reserved) for _ in range(2)])
        assert RacingGateway._calls == 2, outcomes
        return outcomes

    yield race
    _configured.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_a_failure_while_another_call_is_in_flight_is_one_failure_not_two_attempts(racing):
    order_id = uuid.uuid4()
    _remember(order_id)

    outcomes = racing(order_id, second_answers_when=lambda payment: payment.charge_failures == 1)

    payment = Payment.objects.get(order_id=order_id)
    assert (payment.status, payment.charge_attempts, payment.charge_failures) == (Payment.Status.CHARGED, 2, 1)
    assert sorted(outcome.acknowledged for outcome in outcomes) == [False, True]  # the timed-out one comes back
    assert not OutboxEvent.objects.filter(correlation_id=str(order_id), detail_type="Payment Failed").exists()


@pytest.mark.django_db(transaction=True)
def test_an_approval_that_comes_back_after_giving_up_is_refunded(racing):
    order_id = uuid.uuid4()
    _remember(order_id)
    recording_gateway.charge_timeouts_left = 1
    with pytest.raises(GatewayError):
        settling.charge_reserved_order(order_id=order_id)  # the first of the two failures allowed

    # The second failure gives up (Payment Failed) while the other call, in flight, is approved.
    racing(order_id, second_answers_when=lambda payment: payment.status == Payment.Status.DECLINED)
    # Payment Failed cancels the order; payments then hears Order Cancelled, which changes nothing more.
    cancelled = envelope(ORDER_CANCELLED, {**SAMPLE_DATA["Order Cancelled"], "orderId": str(order_id)})
    assert handle_message(service="payments", body=cancelled).acknowledged

    payment = Payment.objects.get(order_id=order_id)
    assert (payment.status, payment.failure_code) == (Payment.Status.REFUNDED, "GATEWAY_ERROR")
    assert payment.gateway_reference and payment.charged_at
    assert _charged_at_provider(order_id) == 1
    refund = Refund.objects.get(payment=payment)
    assert refund.amount == Decimal("59.98")
    events = OutboxEvent.objects.filter(correlation_id=str(order_id)).order_by("created_at")
    assert [event.detail_type for event in events] == ["Payment Failed", "Payment Refunded"]
