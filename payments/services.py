"""Payments writes. Every step locks the order's Payment row, so the charge decision is made once."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from eventbus import event_types

from .gateways import get_gateway
from .models import Payment, Refund

logger = logging.getLogger(__name__)


def _locked_payment(order_id: uuid.UUID) -> Payment:
    payment, _ = Payment.objects.select_for_update().get_or_create(order_id=order_id)
    return payment


def _identity(payment: Payment) -> dict[str, str]:
    data = {"orderId": str(payment.order_id)}
    if payment.customer_email:
        data["email"] = payment.customer_email
    return data


def _charge_if_ready(payment: Payment) -> None:
    """Charge with the order id as the idempotency key: a retry after a crash gets the same charge."""
    if not payment.ready_to_charge:
        return
    result = get_gateway().charge(
        idempotency_key=str(payment.order_id),
        amount=payment.amount,
        currency=payment.currency,
        token=payment.payment_token,
    )
    payment.gateway_reference = result.reference
    amount = {"amount": event_types.money(payment.amount), "currency": payment.currency}
    if result.approved:
        payment.transition_to(Payment.Status.CHARGED)
        payment.charged_at = timezone.now()
        payment.record_event(
            event_types.PAYMENT_PROCESSED,
            {**_identity(payment), "paymentId": str(payment.id), **amount},
            correlation_id=payment.order_id,
        )
        logger.info("order %s charged %s %s", payment.order_id, payment.amount, payment.currency)
    else:
        payment.transition_to(Payment.Status.DECLINED)
        payment.failure_code, payment.failure_reason = result.decline_code, result.message
        payment.record_event(
            event_types.PAYMENT_FAILED,
            {**_identity(payment), "reasonCode": result.decline_code, "reason": result.message, **amount},
            correlation_id=payment.order_id,
        )
        logger.info("order %s payment declined: %s", payment.order_id, result.decline_code)


# Handler-path services open no savepoint (docs/architecture.md, "Savepoints").
@transaction.atomic(savepoint=False)
def remember_order(*, order_id: uuid.UUID, amount: Decimal, currency: str, payment_token: str, email: str) -> Payment:
    """Order Placed: what to charge, and how."""
    payment = _locked_payment(order_id)
    _remember(payment, amount=amount, currency=currency, payment_token=payment_token, email=email)
    _charge_if_ready(payment)
    payment.save()
    return payment


def _remember(payment: Payment, *, amount: Decimal, currency: str, payment_token: str, email: str) -> None:
    """What to charge and how; the first to say wins (Order Placed, or the saga's charge command)."""
    if payment.amount is None:
        payment.amount, payment.currency = amount, currency
        payment.payment_token, payment.customer_email = payment_token, email


@transaction.atomic(savepoint=False)
def charge_reserved_order(*, order_id: uuid.UUID) -> Payment:
    """Inventory Reserved: the stock is held, so take the money (once the amount is known)."""
    payment = _locked_payment(order_id)
    payment.stock_reserved = True
    _charge_if_ready(payment)
    payment.save()
    return payment


@transaction.atomic
def charge_on_command(
    *, order_id: uuid.UUID, amount: Decimal, currency: str, payment_token: str, email: str
) -> Payment:
    """The orchestrated saga's charge step: the command carries what to charge, and the state machine
    only commands it once the stock is held. Never charges an order already cancelled."""
    payment = _locked_payment(order_id)
    _remember(payment, amount=amount, currency=currency, payment_token=payment_token, email=email)
    payment.stock_reserved = True
    _charge_if_ready(payment)
    payment.save()
    return payment


@transaction.atomic(savepoint=False)
def settle_cancelled_order(*, order_id: uuid.UUID) -> Payment:
    """Order Cancelled: never charge it; refund it if it was charged."""
    payment = _locked_payment(order_id)
    payment.order_cancelled = True
    if payment.status == Payment.Status.PENDING:
        payment.transition_to(Payment.Status.VOIDED)
    elif payment.status == Payment.Status.CHARGED:
        _refund(payment)
    payment.save()
    return payment


def _refund(payment: Payment) -> None:
    reference = get_gateway().refund(
        idempotency_key=f"refund:{payment.order_id}",
        charge_reference=payment.gateway_reference,
        amount=payment.amount,
        currency=payment.currency,
    )
    payment.transition_to(Payment.Status.REFUNDED)
    refund = Refund(payment=payment, amount=payment.amount, gateway_reference=reference)
    payment.record_event(
        event_types.PAYMENT_REFUNDED,
        {
            **_identity(payment),
            "paymentId": str(payment.id),
            "refundId": str(refund.id),
            "amount": event_types.money(payment.amount),
            "currency": payment.currency,
        },
        correlation_id=payment.order_id,
    )
    refund.save()  # the caller saves the payment, with its recorded event, in the same transaction
    logger.info("order %s refunded %s %s", payment.order_id, payment.amount, payment.currency)
