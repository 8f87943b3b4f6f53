from eventbus import event_types
from eventbus.events import ReceivedEvent
from eventbus.registry import handles

from . import services


@handles(event_types.INVENTORY_RESERVED, name="orders.stock_reserved")
def mark_order_reserved(event: ReceivedEvent) -> str:
    return services.mark_order_reserved(order_id=event.order_id)


@handles(event_types.RESERVATION_FAILED, name="orders.reservation_failed")
def cancel_for_missing_stock(event: ReceivedEvent) -> str:
    return services.cancel_for_missing_stock(order_id=event.order_id, reason=event.data.get("reason", ""))


@handles(event_types.PAYMENT_PROCESSED, name="orders.payment_processed")
def confirm_paid_order(event: ReceivedEvent) -> str:
    return services.confirm_paid_order(order_id=event.order_id)


@handles(event_types.PAYMENT_FAILED, name="orders.payment_failed")
def cancel_for_failed_payment(event: ReceivedEvent) -> str:
    return services.cancel_for_failed_payment(order_id=event.order_id, reason=event.data.get("reason", ""))


@handles(event_types.PAYMENT_REFUNDED, name="orders.payment_refunded")
def note_order_refunded(event: ReceivedEvent) -> str:
    return services.note_order_refunded(order_id=event.order_id)
