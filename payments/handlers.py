from collections.abc import Callable
from decimal import Decimal

from eventbus import event_types
from eventbus.events import ReceivedEvent
from eventbus.registry import handles
from sagas.definition import ORDER_CANCELLED, PAYMENT_FAILED, TRANSIENT
from sagas.services import answer

from . import services
from .gateways import GatewayError
from .models import Payment

# The choreography's handlers take a run of a receive's events at once (registry, `set_based`): the
# payments settle in one transaction for the whole run, not one or two for each message.


@handles(event_types.ORDER_PLACED, name="payments.remember_order", own_transactions=True, set_based=True)
def remember_order(events: list[ReceivedEvent]) -> list[str | Exception]:
    return _settle_each(
        events,
        lambda event: services.order_placed(
            order_id=event.order_id,
            amount=Decimal(event.data["totalAmount"]),
            currency=event.data["currency"],
            payment_token=event.data.get("paymentToken", "tok_visa"),
            email=event.data.get("email", ""),
            cause=event.event_id,
        ),
    )


@handles(
    event_types.INVENTORY_RESERVED,
    name="payments.charge_reserved_order",
    coordinator="choreography",
    own_transactions=True,
    set_based=True,
)
def charge_reserved_order(events: list[ReceivedEvent]) -> list[str | Exception]:
    return _settle_each(events, lambda event: services.stock_reserved(order_id=event.order_id, cause=event.event_id))


@handles(event_types.ORDER_CANCELLED, name="payments.settle_cancelled_order", own_transactions=True, set_based=True)
def settle_cancelled_order(events: list[ReceivedEvent]) -> list[str | Exception]:
    return _settle_each(events, lambda event: services.order_cancelled(order_id=event.order_id, cause=event.event_id))


def _settle_each(
    events: list[ReceivedEvent], news_of: Callable[[ReceivedEvent], services.OrderNews]
) -> list[str | Exception]:
    """Each event's payment status, or the exception that fails it: an event whose news cannot be read
    fails alone, and the others settle together."""
    read: list[services.OrderNews | Exception] = []
    for event in events:
        try:
            read.append(news_of(event))
        except Exception as exc:  # noqa: BLE001 - this event's message is retried, the others go on
            read.append(exc)
    settled = iter(services.settle(news=[news for news in read if not isinstance(news, Exception)]))
    return [news if isinstance(news, Exception) else _status_of(next(settled)) for news in read]


def _status_of(result: Payment | Exception) -> str | Exception:
    return result if isinstance(result, Exception) else result.status


@handles(
    event_types.CHARGE_PAYMENT, name="payments.charge_on_command", coordinator="stepfunctions", own_transactions=True
)
def charge_on_command(event: ReceivedEvent) -> str:
    # The answer is kept just after the payment's result commits, not with it: a worker that dies in
    # between leaves the command unacknowledged, and its redelivery finds the payment settled and
    # answers then (docs/architecture.md, "Payments and the gateway").
    try:
        payment = services.charge_on_command(
            order_id=event.order_id,
            amount=Decimal(event.data["amount"]),
            currency=event.data["currency"],
            payment_token=event.data["paymentToken"],
            email=event.data.get("email", ""),
        )
    except GatewayError as exc:
        # The attempt stays recorded; the state machine retries the step, which calls with the same key.
        answer(event, succeeded=False, error=TRANSIENT, cause=str(exc))
        return f"gateway error: {exc}"
    if payment.status == Payment.Status.CHARGED:
        answer(event, succeeded=True, output={"paymentId": str(payment.id)})
    elif payment.status == Payment.Status.DECLINED:
        answer(event, succeeded=False, error=PAYMENT_FAILED, cause=payment.failure_reason)
    else:
        answer(event, succeeded=False, error=ORDER_CANCELLED, cause=f"the payment is {payment.status}")
    return payment.status


@handles(
    event_types.REFUND_PAYMENT, name="payments.settle_on_command", coordinator="stepfunctions", own_transactions=True
)
def settle_on_command(event: ReceivedEvent) -> str:
    payment = services.settle_cancelled_order(order_id=event.order_id)
    answer(event, succeeded=True, output={"payment": payment.status})
    return payment.status
