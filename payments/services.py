"""Payments writes. No gateway call is made inside a database transaction (docs/architecture.md,
"Payments and the gateway"): a step that makes a charge or a refund due records the attempt and
commits, calls the gateway with the idempotency key outside any transaction, and records the answer,
with its event, in a second transaction. Each transaction locks the order's Payment row, so the
decision to call is made once; a crash between the steps leaves the attempt recorded, and the next
delivery that touches the payment calls again with the same key, which the gateway answers with the
first answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from eventbus import event_types
from eventbus.event_types import PaymentFailure

from .gateways import ChargeResult, GatewayError, get_gateway
from .models import Payment, Refund

logger = logging.getLogger(__name__)


class _Call(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


def _locked_payment(order_id: uuid.UUID) -> Payment:
    payment, _ = Payment.objects.select_for_update().get_or_create(order_id=order_id)
    return payment


def _identity(payment: Payment) -> dict[str, str]:
    data = {"orderId": str(payment.order_id)}
    if payment.customer_email:
        data["email"] = payment.customer_email
    return data


def _settle(*, order_id: uuid.UUID, change: Callable[[Payment], None]) -> Payment:
    """Apply `change` to the locked payment, then make each gateway call that leaves due, each between
    two short transactions. Raises GatewayError, after recording it, when the call is to be retried by
    a redelivery. The transactions are `durable`: called inside a caller's transaction, the gateway
    call would hold its locks after all, so that is refused (RuntimeError)."""
    with transaction.atomic(durable=True):
        payment = _locked_payment(order_id)
        change(payment)
        due = _begin_due_call(payment)
        payment.save()
    while due is not None:
        try:
            answer: ChargeResult | str | GatewayError = _call_gateway(payment, due)
        except GatewayError as exc:
            answer = exc
        with transaction.atomic(durable=True):
            payment = _locked_payment(order_id)
            retry = _record_answer(payment, due, answer)
            due = None if retry else _begin_due_call(payment)
            payment.save()
        if retry:
            raise answer
    return payment


def _begin_due_call(payment: Payment) -> _Call | None:
    """Record an attempt at the gateway call the payment is due, if any: a charge once it is ready, a
    refund once a charged order is cancelled, or again the one a crash or an error left unanswered."""
    if payment.ready_to_charge:
        payment.transition_to(Payment.Status.CHARGING)
    if payment.status == Payment.Status.CHARGING:
        payment.charge_attempts += 1
        return _Call.CHARGE
    if payment.status == Payment.Status.CHARGED and payment.order_cancelled:
        payment.transition_to(Payment.Status.REFUNDING)
    if payment.status == Payment.Status.REFUNDING:
        payment.refund_attempts += 1
        return _Call.REFUND
    return None


def _call_gateway(payment: Payment, due: _Call) -> ChargeResult | str:
    """The gateway's answer, with the parameters the attempt was recorded with; outside any transaction."""
    if due == _Call.CHARGE:
        return get_gateway().charge(
            idempotency_key=payment.charge_key,
            amount=payment.amount,
            currency=payment.currency,
            token=payment.payment_token,
        )
    return get_gateway().refund(
        idempotency_key=payment.refund_key,
        charge_reference=payment.gateway_reference,
        amount=payment.amount,
        currency=payment.currency,
    )


def _record_answer(payment: Payment, due: _Call, answer: ChargeResult | str | GatewayError) -> bool:
    """Record the gateway's answer on the locked payment, with its event; True if the call is to be
    retried. An answer another delivery recorded first (two deliveries called with the same key, and
    got the same answer) changes nothing."""
    expected = Payment.Status.CHARGING if due == _Call.CHARGE else Payment.Status.REFUNDING
    if payment.status != expected:
        return False
    if isinstance(answer, GatewayError):
        payment.last_gateway_error = str(answer)[:300]
        if due == _Call.CHARGE and payment.charge_attempts >= settings.PAYMENT_MAX_GATEWAY_ATTEMPTS:
            # Give up in time for the order to cancel now, with the reason, rather than wait for the
            # message's DLQ and the stuck-order timeout. A refund is never given up: it is owed.
            _decline(
                payment,
                code=PaymentFailure.GATEWAY_ERROR,
                reason=f"The payment provider did not answer after {payment.charge_attempts} attempts.",
            )
            return False
        logger.warning("order %s: %s attempt %s failed: %s", payment.order_id, due, _attempts(payment, due), answer)
        return True
    if due == _Call.REFUND:
        _record_refund(payment, reference=answer)
    elif answer.approved:
        _record_charge(payment, reference=answer.reference)
    else:
        payment.gateway_reference = answer.reference
        _decline(payment, code=answer.decline_code, reason=answer.message)
    return False


def _attempts(payment: Payment, due: _Call) -> int:
    return payment.charge_attempts if due == _Call.CHARGE else payment.refund_attempts


def _amount(payment: Payment) -> dict[str, str]:
    return {"amount": event_types.money(payment.amount), "currency": payment.currency}


def _record_charge(payment: Payment, *, reference: str) -> None:
    payment.transition_to(Payment.Status.CHARGED)
    payment.gateway_reference = reference
    payment.charged_at = timezone.now()
    payment.record_event(
        event_types.PAYMENT_PROCESSED,
        {**_identity(payment), "paymentId": str(payment.id), **_amount(payment)},
        correlation_id=payment.order_id,
    )
    logger.info("order %s charged %s %s", payment.order_id, payment.amount, payment.currency)


def _decline(payment: Payment, *, code: str, reason: str) -> None:
    payment.transition_to(Payment.Status.DECLINED)
    payment.failure_code, payment.failure_reason = code, reason
    payment.record_event(
        event_types.PAYMENT_FAILED,
        {**_identity(payment), "reasonCode": code, "reason": reason, **_amount(payment)},
        correlation_id=payment.order_id,
    )
    logger.info("order %s payment failed: %s", payment.order_id, code)


def _record_refund(payment: Payment, *, reference: str) -> None:
    payment.transition_to(Payment.Status.REFUNDED)
    refund = Refund.objects.create(payment=payment, amount=payment.amount, gateway_reference=reference)
    payment.record_event(
        event_types.PAYMENT_REFUNDED,
        {**_identity(payment), "paymentId": str(payment.id), "refundId": str(refund.id), **_amount(payment)},
        correlation_id=payment.order_id,
    )
    logger.info("order %s refunded %s %s", payment.order_id, payment.amount, payment.currency)


def _remember(payment: Payment, *, amount: Decimal, currency: str, payment_token: str, email: str) -> None:
    """What to charge and how; the first to say wins (Order Placed, or the saga's charge command), so
    a charge retried with its key always carries the parameters it was first sent with."""
    if payment.amount is None:
        payment.amount, payment.currency = amount, currency
        payment.payment_token, payment.customer_email = payment_token, email


def remember_order(*, order_id: uuid.UUID, amount: Decimal, currency: str, payment_token: str, email: str) -> Payment:
    """Order Placed: what to charge, and how."""
    return _settle(
        order_id=order_id,
        change=lambda payment: _remember(
            payment, amount=amount, currency=currency, payment_token=payment_token, email=email
        ),
    )


def _stock_reserved(payment: Payment) -> None:
    payment.stock_reserved = True


def charge_reserved_order(*, order_id: uuid.UUID) -> Payment:
    """Inventory Reserved: the stock is held, so take the money (once the amount is known)."""
    return _settle(order_id=order_id, change=_stock_reserved)


def charge_on_command(
    *, order_id: uuid.UUID, amount: Decimal, currency: str, payment_token: str, email: str
) -> Payment:
    """The orchestrated saga's charge step: the command carries what to charge, and the state machine
    only commands it once the stock is held. Never charges an order already cancelled."""

    def commanded(payment: Payment) -> None:
        _remember(payment, amount=amount, currency=currency, payment_token=payment_token, email=email)
        _stock_reserved(payment)

    return _settle(order_id=order_id, change=commanded)


def _cancelled(payment: Payment) -> None:
    payment.order_cancelled = True
    if payment.status == Payment.Status.PENDING:
        payment.transition_to(Payment.Status.VOIDED)


def settle_cancelled_order(*, order_id: uuid.UUID) -> Payment:
    """Order Cancelled: never charge it; refund it if it was charged. A charge still unanswered is
    answered first (same key, so no new charge), and refunded if it went through."""
    return _settle(order_id=order_id, change=_cancelled)
