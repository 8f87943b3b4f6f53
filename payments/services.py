"""Payments writes. No gateway call is made inside a database transaction (docs/architecture.md,
"Payments and the gateway"): a step that makes a charge or a refund due records the attempt and
commits, calls the gateway with the idempotency key outside any transaction, and records the answer,
with its event, in a second transaction. Each transaction locks the orders' Payment rows, so the
decision to call is made once; a crash between the steps leaves the attempt recorded, and the next
delivery that touches the payment calls again with the same key, which the gateway answers with the
first answer. A receive's news settles as one set (`settle`): its first transaction holds all of it.
`order_placed`, `stock_reserved`, `order_cancelled` and `charge_commanded` write nothing: they read an
event as the news that `settle` applies.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from eventbus import event_types
from eventbus.event_types import PaymentFailure
from eventbus.events import caused_by

from .gateways import ChargeResult, GatewayError, get_gateway
from .models import Payment, Refund

logger = logging.getLogger(__name__)


class _Call(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


@dataclass(frozen=True)
class OrderNews:
    """What one event tells payments about its order, applied to the order's locked payment. `cause` is
    the event's id, the causationId of the events the payment records for it; None keeps the one the
    caller set (`eventbus.events.caused_by`)."""

    order_id: uuid.UUID
    change: Callable[[Payment], None]
    cause: uuid.UUID | None = None


@dataclass
class _Settling:
    """One payment through a settle: the gateway call it is due, its answer, and the exception that
    fails every delivery whose news touched it, if any."""

    payment: Payment
    cause: uuid.UUID | None = None  # the last news' event
    due: _Call | None = None
    answer: ChargeResult | str | GatewayError | None = None
    failure: Exception | None = None


def settle(
    *, news: list[OrderNews], on_settled: Callable[[int, Payment | Exception], None] | None = None
) -> list[Payment | Exception]:
    """Apply each piece of news to its order's payment and make every gateway call that leaves due: one
    transaction locks the payments and records every change and every attempt; the calls are made
    outside any transaction; their answers are recorded together, in one transaction while the
    gateway answers fast, and each on its own when it is slow (`_call_and_record`). An answer that
    makes another call due (a refund of an order charged and cancelled meanwhile) goes round again.
    So a receive of ten charges costs two transactions at best and eleven at worst, where one by one
    it took twenty.

    Returns, for each piece of news in order, its payment as it ended, or the exception that fails its
    delivery: a GatewayError to retry (recorded first), or whatever else went wrong. News of one order
    is applied together, in order, before the payment decides what call it is due (an order reserved
    and cancelled in one set is voided, never charged and refunded). If the first transaction
    fails (a deadlock, or a payment another worker created meanwhile), each piece of news is settled
    alone, so one bad message fails no other. The transactions are `durable`: inside a caller's
    transaction the gateway calls would hold its locks after all, so that is refused (RuntimeError).

    `on_settled(position, result)`, if given, is called once for each piece of news as soon as its
    payment is final (every answer it was due recorded and committed), outside any transaction, so a
    caller that answers someone for it (the saga's commands) need not wait for the set's other calls.
    It must not raise."""
    tell = on_settled or _tell_no_one
    try:
        settling = _record_changes(news)
    except Exception as exc:  # noqa: BLE001 - settled one by one below, where each fails or not on its own
        if len(news) == 1:
            tell(0, exc)
            return [exc]
        logger.info("settling %d payments together failed (%s); settling them one by one", len(news), exc)
        return [
            result
            for position, one in enumerate(news)
            for result in settle(news=[one], on_settled=lambda _, result, position=position: tell(position, result))
        ]
    positions: dict[uuid.UUID, list[int]] = {}
    for position, one in enumerate(news):
        positions.setdefault(one.order_id, []).append(position)

    def final(entry: _Settling) -> None:
        for position in positions[entry.payment.order_id]:
            tell(position, entry.failure or entry.payment)

    for entry in settling.values():
        if entry.due is None:
            final(entry)
    while due := [entry for entry in settling.values() if entry.due is not None]:
        _call_and_record(due, final)
    return [entry.failure or entry.payment for entry in (settling[one.order_id] for one in news)]


def _tell_no_one(position: int, result: Payment | Exception) -> None:
    pass


def _call_and_record(due: list[_Settling], final: Callable[[_Settling], None]) -> None:
    """Make each call due and record the answers, several in one transaction while the gateway answers
    fast, but none held longer than PAYMENT_ANSWER_HOLD_MS and one more call: after a slow call (a real
    provider takes hundreds of milliseconds) the answers in hand are recorded before the next call, so
    no payment of a set waits for every other's. `final` is told of each payment that ends."""
    hold = settings.PAYMENT_ANSWER_HOLD_MS / 1000
    answered: list[_Settling] = []
    first_held_at = 0.0
    for entry in due:
        started = time.monotonic()
        _ask_gateway(entry)
        now = time.monotonic()
        if entry.due is None:
            final(entry)
        else:
            if not answered:
                first_held_at = now
            answered.append(entry)
        if answered and (now - started >= hold or now - first_held_at >= hold):
            _record_answers(answered, final)
            answered = []
    _record_answers(answered, final)


def _record_changes(news: list[OrderNews]) -> dict[uuid.UUID, _Settling]:
    """The first transaction: lock the news' payments (creating those missing), apply the news, and
    record the attempt at each call that leaves due."""
    with transaction.atomic(durable=True):
        settling = {
            payment.order_id: _Settling(payment=payment)
            for payment in _locked_payments({one.order_id for one in news}, create_alone=len(news) == 1)
        }
        for one in news:
            entry = settling[one.order_id]
            one.change(entry.payment)
            entry.cause = one.cause
        for entry in settling.values():
            entry.due = _begin_due_call(entry.payment)
            _save(entry)
    return settling


def _locked_payments(order_ids: set[uuid.UUID], *, create_alone: bool) -> list[Payment]:
    """The orders' payments, locked in order-id order; a missing one is new and unsaved. A single
    order's is created at once, in a savepoint (get_or_create), so a worker that created it meanwhile
    costs a wait, not a failure; in a set, the save creates it without a savepoint, and that rare race
    fails the set, which is then settled one by one."""
    if create_alone:
        (order_id,) = order_ids
        return [Payment.objects.select_for_update().get_or_create(order_id=order_id)[0]]
    found = {
        payment.order_id: payment
        for payment in Payment.objects.select_for_update().filter(order_id__in=order_ids).order_by("order_id")
    }
    return [found.get(order_id) or Payment(order_id=order_id) for order_id in sorted(order_ids)]


def _save(entry: _Settling) -> None:
    with caused_by(entry.cause) if entry.cause else nullcontext():
        entry.payment.save()


def _ask_gateway(entry: _Settling) -> None:
    """The gateway's answer to the call the payment is due, asked outside any transaction. A call that
    raises anything but a GatewayError is not recorded: it fails the deliveries that touched this
    payment, whose redeliveries call again with the same key."""
    try:
        entry.answer = _call_gateway(entry.payment, entry.due)
    except GatewayError as exc:
        entry.answer = exc
    except Exception as exc:  # noqa: BLE001 - this payment's deliveries fail, the others' go on
        entry.failure, entry.due = exc, None


def _record_answers(answered: list[_Settling], final: Callable[[_Settling], None]) -> None:
    """The second transaction: record each answer on its locked payment (in order-id order), with its
    event, and the attempt at any call it makes due. If that fails, each answer is recorded alone, so
    one failure costs no other: an answer that cannot be recorded fails its own deliveries, whose
    redeliveries ask the gateway again with the same key."""
    if not answered:
        return
    calls = [(entry, entry.due) for entry in answered]
    try:
        with transaction.atomic(durable=True):
            locked = {
                payment.order_id: payment
                for payment in Payment.objects.select_for_update()
                .filter(order_id__in=[entry.payment.order_id for entry in answered])
                .order_by("order_id")
            }
            for entry in answered:
                entry.payment = locked[entry.payment.order_id]
                _record_answer_of(entry)
    except Exception as exc:  # noqa: BLE001 - recorded one by one below, each succeeding or failing alone
        if len(answered) == 1:
            answered[0].failure, answered[0].due = exc, None
            final(answered[0])
            return
        logger.info("recording %d gateway answers together failed (%s); one by one", len(answered), exc)
        for entry, due in calls:
            entry.due, entry.failure = due, None  # as before the rolled-back attempt
            _record_answers([entry], final)
        return
    for entry in answered:
        if entry.due is None:
            final(entry)


def _record_answer_of(entry: _Settling) -> None:
    if _record_answer(entry.payment, entry.due, entry.answer):
        entry.failure, entry.due = entry.answer, None
    else:
        entry.due = _begin_due_call(entry.payment)
    _save(entry)


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
    got the same answer) changes nothing, but for an approval that comes back after payments gave up
    on the gateway: that money is refunded."""
    if due == _Call.CHARGE and _approved_after_giving_up(payment, answer):
        _refund_charge_given_up(payment, reference=answer.reference)
        return False
    expected = Payment.Status.CHARGING if due == _Call.CHARGE else Payment.Status.REFUNDING
    if payment.status != expected:
        return False
    if isinstance(answer, GatewayError):
        payment.last_gateway_error = str(answer)[:300]
        if due == _Call.CHARGE:
            payment.charge_failures += 1
            if payment.charge_failures >= settings.PAYMENT_MAX_GATEWAY_ATTEMPTS:
                # Give up in time for the order to cancel now, with the reason, rather than wait for the
                # message's DLQ and the stuck-order timeout. A refund is never given up: it is owed.
                _decline(
                    payment,
                    code=PaymentFailure.GATEWAY_ERROR,
                    reason=f"The payment provider did not answer after {payment.charge_failures} attempts.",
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


def _approved_after_giving_up(payment: Payment, answer: ChargeResult | str | GatewayError) -> bool:
    """An approval for a payment already given up on: another delivery's attempt, in flight with the
    same key while this one's failure was the last one allowed."""
    return (
        payment.status == Payment.Status.DECLINED
        and payment.failure_code == PaymentFailure.GATEWAY_ERROR
        and isinstance(answer, ChargeResult)
        and answer.approved
    )


def _refund_charge_given_up(payment: Payment, *, reference: str) -> None:
    """The provider holds the money of an order that Payment Failed is cancelling: record the charge and
    make its refund due, which ends with Payment Refunded (the customer is told)."""
    payment.transition_to(Payment.Status.REFUNDING)
    payment.gateway_reference = reference
    payment.charged_at = timezone.now()
    logger.warning(
        "order %s: the provider approved a charge after payments had given up on the gateway; refunding it",
        payment.order_id,
    )


def _attempts(payment: Payment, due: _Call) -> int:
    return payment.charge_attempts if due == _Call.CHARGE else payment.refund_attempts


def _identity(payment: Payment) -> dict[str, str]:
    data = {"orderId": str(payment.order_id)}
    if payment.customer_email:
        data["email"] = payment.customer_email
    return data


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


def order_placed(
    *,
    order_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    payment_token: str,
    email: str,
    cause: uuid.UUID | None = None,
) -> OrderNews:
    """Order Placed: what to charge, and how."""
    return OrderNews(
        order_id=order_id,
        change=partial(_remember, amount=amount, currency=currency, payment_token=payment_token, email=email),
        cause=cause,
    )


def _stock_reserved(payment: Payment) -> None:
    payment.stock_reserved = True


def stock_reserved(*, order_id: uuid.UUID, cause: uuid.UUID | None = None) -> OrderNews:
    """Inventory Reserved: the stock is held, so take the money (once the amount is known)."""
    return OrderNews(order_id=order_id, change=_stock_reserved, cause=cause)


def _cancelled(payment: Payment) -> None:
    payment.order_cancelled = True
    if payment.status == Payment.Status.PENDING:
        payment.transition_to(Payment.Status.VOIDED)


def order_cancelled(*, order_id: uuid.UUID, cause: uuid.UUID | None = None) -> OrderNews:
    """Order Cancelled: never charge it; refund it if it was charged. A charge still unanswered is
    answered first (same key, so no new charge), and refunded if it went through."""
    return OrderNews(order_id=order_id, change=_cancelled, cause=cause)


def charge_commanded(
    *,
    order_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    payment_token: str,
    email: str,
    cause: uuid.UUID | None = None,
) -> OrderNews:
    """The orchestrated saga's charge step: the command carries what to charge, and the state machine
    only commands it once the stock is held. Never charges an order already cancelled."""

    placed = order_placed(order_id=order_id, amount=amount, currency=currency, payment_token=payment_token, email=email)

    def commanded(payment: Payment) -> None:
        placed.change(payment)
        _stock_reserved(payment)

    return OrderNews(order_id=order_id, change=commanded, cause=cause)
