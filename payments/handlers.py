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

# Each handler takes a run of a receive's events at once (registry, `set_based`): the payments settle
# in one transaction for the whole run, not one or two for each message.


@handles(event_types.ORDER_PLACED, name="payments.remember_order", own_transactions=True, set_based=True)
def remember_order(events: list[ReceivedEvent]) -> list[str | Exception]:
    return _statuses(
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
    return _statuses(events, lambda event: services.stock_reserved(order_id=event.order_id, cause=event.event_id))


@handles(event_types.ORDER_CANCELLED, name="payments.settle_cancelled_order", own_transactions=True, set_based=True)
def settle_cancelled_order(events: list[ReceivedEvent]) -> list[str | Exception]:
    return _statuses(events, lambda event: services.order_cancelled(order_id=event.order_id, cause=event.event_id))


@handles(
    event_types.CHARGE_PAYMENT,
    name="payments.charge_on_command",
    coordinator="stepfunctions",
    own_transactions=True,
    set_based=True,
)
def charge_on_command(events: list[ReceivedEvent]) -> list[str | Exception]:
    # Each answer is kept just after its payment's result commits, not with it: a worker that dies in
    # between leaves the command unacknowledged, and its redelivery finds the payment settled and
    # answers then (docs/architecture.md, "Payments and the gateway").
    return _answered(
        events,
        lambda event: services.charge_commanded(
            order_id=event.order_id,
            amount=Decimal(event.data["amount"]),
            currency=event.data["currency"],
            payment_token=event.data["paymentToken"],
            email=event.data.get("email", ""),
            cause=event.event_id,
        ),
        _answer_charge,
    )


@handles(
    event_types.REFUND_PAYMENT,
    name="payments.settle_on_command",
    coordinator="stepfunctions",
    own_transactions=True,
    set_based=True,
)
def settle_on_command(events: list[ReceivedEvent]) -> list[str | Exception]:
    return _answered(
        events,
        lambda event: services.order_cancelled(order_id=event.order_id, cause=event.event_id),
        _answer_refund,
    )


def _answer_charge(command: ReceivedEvent, settled: Payment | Exception) -> str:
    if isinstance(settled, GatewayError):
        # The attempt stays recorded; the state machine retries the step, which calls with the same key.
        answer(command, succeeded=False, error=TRANSIENT, cause=str(settled))
        return f"gateway error: {settled}"
    if isinstance(settled, Exception):
        raise settled
    if settled.status == Payment.Status.CHARGED:
        answer(command, succeeded=True, output={"paymentId": str(settled.id)})
    elif settled.status == Payment.Status.DECLINED:
        answer(command, succeeded=False, error=PAYMENT_FAILED, cause=settled.failure_reason)
    else:
        answer(command, succeeded=False, error=ORDER_CANCELLED, cause=f"the payment is {settled.status}")
    return settled.status


def _answer_refund(command: ReceivedEvent, settled: Payment | Exception) -> str:
    if isinstance(settled, Exception):
        raise settled
    answer(command, succeeded=True, output={"payment": settled.status})
    return settled.status


def _statuses(
    events: list[ReceivedEvent], news_of: Callable[[ReceivedEvent], services.OrderNews]
) -> list[str | Exception]:
    return [result if isinstance(result, Exception) else result.status for result in _settle_each(events, news_of)]


def _answered(
    events: list[ReceivedEvent],
    news_of: Callable[[ReceivedEvent], services.OrderNews],
    answer_with: Callable[[ReceivedEvent, Payment | Exception], str],
) -> list[str | Exception]:
    """Settle the commands together, and answer each with how its payment ended as soon as it has, not
    after the set's other gateway calls (a step's answer is on the saga's critical path). An answer
    that cannot be kept fails its own command alone."""
    notes: dict[int, str | Exception] = {}

    def answer_now(index: int, settled: Payment | Exception) -> None:
        try:
            notes[index] = answer_with(events[index], settled)
        except Exception as exc:  # noqa: BLE001 - this command is retried, the others go on
            notes[index] = exc

    _settle_each(events, news_of, on_settled=answer_now)
    return [notes[index] for index in range(len(events))]


def _settle_each(
    events: list[ReceivedEvent],
    news_of: Callable[[ReceivedEvent], services.OrderNews],
    on_settled: Callable[[int, Payment | Exception], None] | None = None,
) -> list[Payment | Exception]:
    """Each event's payment as it ended, or the exception that fails it: an event whose news cannot be
    read fails alone, and the others settle together. `on_settled(index, result)` is told of each as
    soon as it ends (services.settle)."""
    news: dict[int, services.OrderNews] = {}
    results: dict[int, Payment | Exception] = {}
    for index, event in enumerate(events):
        try:
            news[index] = news_of(event)
        except Exception as exc:  # noqa: BLE001 - this event's message is retried, the others go on
            results[index] = exc
            if on_settled:
                on_settled(index, exc)
    if news:
        readable = list(news)
        settled = services.settle(
            news=list(news.values()),
            on_settled=None if on_settled is None else lambda position, result: on_settled(readable[position], result),
        )
        results.update(zip(readable, settled, strict=True))
    return [results[index] for index in range(len(events))]
