from contextlib import AbstractContextManager

from eventbus import event_types
from eventbus.events import ReceivedEvent
from eventbus.registry import handles, locks_ahead
from eventbus.state_machine import IllegalTransition
from sagas.definition import ORDER_CANCELLED
from sagas.services import answer

from . import services
from .models import Order


@locks_ahead
def hold_orders_for(events: list[ReceivedEvent]) -> AbstractContextManager[None]:
    """The receive's orders, locked first in one query."""
    return services.hold_orders(order_ids=[event.order_id for event in events])


@handles(event_types.INVENTORY_RESERVED, name="orders.stock_reserved", batchable=True)
def mark_order_reserved(event: ReceivedEvent) -> str:
    return services.mark_order_reserved(order_id=event.order_id)


@handles(event_types.RESERVATION_FAILED, name="orders.reservation_failed", coordinator="choreography", batchable=True)
def cancel_for_missing_stock(event: ReceivedEvent) -> str:
    return services.cancel_for_missing_stock(order_id=event.order_id, reason=event.data.get("reason", ""))


@handles(event_types.PAYMENT_PROCESSED, name="orders.payment_processed", coordinator="choreography", batchable=True)
def confirm_paid_order(event: ReceivedEvent) -> str:
    return services.confirm_paid_order(order_id=event.order_id)


@handles(event_types.PAYMENT_FAILED, name="orders.payment_failed", coordinator="choreography", batchable=True)
def cancel_for_failed_payment(event: ReceivedEvent) -> str:
    return services.cancel_for_failed_payment(order_id=event.order_id, reason=event.data.get("reason", ""))


@handles(event_types.PAYMENT_REFUNDED, name="orders.payment_refunded", batchable=True)
def note_order_refunded(event: ReceivedEvent) -> str:
    return services.note_order_refunded(order_id=event.order_id)


@handles(event_types.CONFIRM_ORDER, name="orders.confirm_on_command", coordinator="stepfunctions")
def confirm_on_command(event: ReceivedEvent) -> str:
    try:
        status = services.confirm_order(order_id=event.order_id).status
    except IllegalTransition as exc:
        status = exc.current
    if status in (Order.Status.CONFIRMED, Order.Status.SHIPPED):
        answer(event, succeeded=True, output={"status": status})
    else:
        answer(event, succeeded=False, error=ORDER_CANCELLED, cause=f"the order is {status}")
    return status


@handles(event_types.CANCEL_ORDER, name="orders.cancel_on_command", coordinator="stepfunctions")
def cancel_on_command(event: ReceivedEvent) -> str:
    try:
        status = services.cancel_order(
            order_id=event.order_id, reason_code=event.data["reasonCode"], reason=event.data.get("reason", "")
        ).status
    except IllegalTransition as exc:
        status = exc.current  # already cancelled (or shipped): nothing left to undo here
    answer(event, succeeded=True, output={"status": status})
    return status
